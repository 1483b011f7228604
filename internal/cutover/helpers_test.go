package cutover

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"hsops/internal/config"
	"hsops/internal/db"
	"hsops/internal/pgtest"
	"hsops/internal/proc"
	"hsops/internal/testbin"
)

var binDir string

func TestMain(m *testing.M) {
	code := func() int {
		dir, err := testbin.TempDir("hsops/cmd/homeserver", "hsops/cmd/hsload", "hsops/cmd/port_db")
		if err != nil {
			fmt.Fprintf(os.Stderr, "build the tools: %v\n", err)
			return 1
		}
		defer os.RemoveAll(dir)
		binDir = dir
		return pgtest.Stopping(m).Run()
	}()
	os.Exit(code)
}

// deployment is an engine homeserver in a temporary directory, with a
// PostgreSQL database to switch to.
type deployment struct {
	t        *testing.T
	dir      string
	config   string
	sqlite   string
	pg       pgtest.Database
	pgConfig string
	original []byte
	proxy    *proxy
}

// comment is a line of the config that must survive the switch.
const comment = "# operator's note: keep the media on the big disk\n"

// newDeployment generates a homeserver config (with comments of the
// operator's around the database section) and starts the homeserver on
// SQLite. With viaProxy the PostgreSQL config reaches the server through a
// loopback proxy the test can cut.
func newDeployment(t *testing.T, viaProxy bool) *deployment {
	t.Helper()
	pg := pgtest.NewDatabase(t) // first: its cleanup runs after the stop
	dir := t.TempDir()
	d := &deployment{t: t, dir: dir, config: filepath.Join(dir, "hs", "homeserver.yaml"), sqlite: filepath.Join(dir, "hs", "homeserver.db"), pg: pg}
	d.run(0, "homeserver", "-c", d.config, "--generate-config", "--server-name", "example.org", "--report-stats", "no")
	port := freePort(t)
	data, err := os.ReadFile(d.config)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(data), "port: 8008", fmt.Sprintf("port: %d", port), 1)
	s = strings.Replace(s, "bind_addresses: ['::1', '127.0.0.1']", "bind_addresses: ['127.0.0.1']   # loopback only", 1)
	s = strings.Replace(s, "database:\n", comment+"database:\n  # SQLite until the switch\n", 1)
	s = strings.Replace(s, "log_config:", "\n# logging (this comment belongs to log_config)\nlog_config:", 1)
	d.original = []byte(s)
	if err := os.WriteFile(d.config, d.original, 0o600); err != nil {
		t.Fatal(err)
	}
	args := pg.Config.Args
	if viaProxy {
		d.proxy = newProxy(t, args["host"], args["port"])
		args = map[string]string{}
		for k, v := range pg.Config.Args {
			args[k] = v
		}
		args["host"], args["port"] = "127.0.0.1", d.proxy.port
	}
	var b strings.Builder
	b.WriteString("server_name: example.org\n# the PostgreSQL database\ndatabase:\n  name: psycopg2\n  args:\n")
	for _, k := range []string{"user", "password", "host", "port", "dbname", "sslmode"} {
		if v, ok := args[k]; ok {
			fmt.Fprintf(&b, "    %s: %q\n", k, v)
		}
	}
	d.pgConfig = filepath.Join(dir, "postgres.yaml")
	if err := os.WriteFile(d.pgConfig, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sup := d.supervisor()
		sup.Kill = true
		if pl, err := proc.Discover(proc.Selection{Config: d.config}); err == nil {
			_ = sup.Stop(context.Background(), pl)
		}
	})
	if err := d.supervisor().Start(context.Background(), d.plan()); err != nil {
		t.Fatal(err)
	}
	return d
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func (d *deployment) supervisor() *proc.Supervisor {
	return &proc.Supervisor{Launcher: proc.Launcher{Homeserver: filepath.Join(binDir, "homeserver")}, Timeout: 30 * time.Second}
}

func (d *deployment) plan() proc.Plan {
	d.t.Helper()
	pl, err := proc.Discover(proc.Selection{Config: d.config})
	if err != nil {
		d.t.Fatal(err)
	}
	return pl
}

func (d *deployment) options() Options {
	return Options{SQLitePath: d.sqlite, PostgresConfig: d.pgConfig, Config: d.config,
		Launcher: proc.Launcher{Homeserver: filepath.Join(binDir, "homeserver")}, Timeout: 30 * time.Second,
		BatchSize: 1000, Jobs: 2, PreCopyGoal: time.Second}
}

// run runs one of the tools and checks its exit code.
func (d *deployment) run(want int, tool string, args ...string) string {
	d.t.Helper()
	cmd := exec.Command(filepath.Join(binDir, tool), args...)
	cmd.Dir = d.dir
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		d.t.Fatal(err)
	}
	if code != want {
		d.t.Fatalf("%s %s: exit %d, want %d\n%s", tool, strings.Join(args, " "), code, want, out)
	}
	return string(out)
}

// load sends messages through the client API as users of prefix.
func (d *deployment) load(prefix string, messages int) {
	d.t.Helper()
	d.run(0, "hsload", "http", "-c", d.config, "--users", "3", "--rooms", "1", "--members", "3",
		"--messages", fmt.Sprint(messages), "--reads", "5", "--searches", "2", "--concurrency", "3", "--prefix", prefix)
}

var digestRE = regexp.MustCompile(`(\d+) messages \(digest ([0-9a-f]+)\)`)

// digest reads every message the users of the prefixes see, through the
// running homeserver.
func (d *deployment) digest(prefixes ...string) string {
	d.t.Helper()
	args := []string{"check", "-c", d.config}
	for _, p := range prefixes {
		args = append(args, "--login", p+"-0:load-"+p+"-0")
	}
	m := digestRE.FindStringSubmatch(d.run(0, "hsload", args...))
	if m == nil {
		d.t.Fatal("no digest in hsload check's output")
	}
	return m[1] + " " + m[2]
}

// database is the database the config names now.
func (d *deployment) database() config.Database {
	d.t.Helper()
	got, err := currentDatabase(d.config)
	if err != nil {
		d.t.Fatal(err)
	}
	return got
}

// onSQLite checks the homeserver runs, healthy, with the old config.
func (d *deployment) onSQLite() {
	d.t.Helper()
	data, err := os.ReadFile(d.config)
	if err != nil {
		d.t.Fatal(err)
	}
	if string(data) != string(d.original) {
		d.t.Fatalf("the config is not the old one:\n%s", data)
	}
	d.healthy()
}

func (d *deployment) healthy() {
	d.t.Helper()
	pl := d.plan()
	if err := proc.WaitHealthy(context.Background(), pl.Main.HealthURL, 10*time.Second); err != nil {
		d.t.Fatalf("the homeserver is not healthy: %v", err)
	}
}

// exec runs SQL on the PostgreSQL database directly.
func (d *deployment) exec(query string) {
	d.t.Helper()
	c, err := db.Open(context.Background(), d.pg.Config, db.Options{})
	if err != nil {
		d.t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Exec(query); err != nil {
		d.t.Fatalf("%s: %v", query, err)
	}
}

// portComplete reports whether the PostgreSQL database holds a complete
// port.
func (d *deployment) portComplete() bool {
	d.t.Helper()
	c, err := db.Open(context.Background(), d.pg.Config, db.Options{})
	if err != nil {
		d.t.Fatal(err)
	}
	defer c.Close()
	var done *int64
	if err := c.QueryRow("SELECT completed_ts FROM hsops_port").Scan(&done); err != nil {
		return false
	}
	return done != nil
}

// proxy forwards loopback TCP connections to the PostgreSQL server until
// it is cut.
type proxy struct {
	l     net.Listener
	port  string
	mu    sync.Mutex
	conns []net.Conn
}

func newProxy(t *testing.T, host, port string) *proxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{l: l, port: fmt.Sprint(l.Addr().(*net.TCPAddr).Port)}
	network, addr := "tcp", net.JoinHostPort(host, port)
	if strings.HasPrefix(host, "/") {
		network, addr = "unix", filepath.Join(host, ".s.PGSQL."+port)
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial(network, addr)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, s)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(s, c); s.Close() }()
			go func() { _, _ = io.Copy(c, s); c.Close() }()
		}
	}()
	t.Cleanup(p.cut)
	return p
}

// cut closes the listener and every connection: PostgreSQL is unreachable.
func (p *proxy) cut() {
	p.l.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}
