package load

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"hsops/internal/cli"
	"hsops/internal/config"
	"hsops/internal/cutover"
	"hsops/internal/db"
	"hsops/internal/gen"
	"hsops/internal/pgcluster"
	"hsops/internal/proc"
)

// BenchSwitchOptions are hsload bench-switch's flags.
type BenchSwitchOptions struct {
	Events, Clients, Jobs           int
	Work, Source, PGURL, Homeserver string
	Verify                          string
	JSON                            bool
}

// benchSwitchResult is the outcome, also printed as JSON.
type benchSwitchResult struct {
	Events       int             `json:"events"`
	SQLiteMB     float64         `json:"sqlite_mb"`
	Clients      int             `json:"clients"`
	Verify       string          `json:"verify"`
	SentDuring   int             `json:"messages_sent_during_pre_copy"`
	SendErrors   int             `json:"send_errors"`
	LoadError    string          `json:"load_error,omitempty"`
	LoadAvg      string          `json:"loadavg_at_stop"`
	LoadAvgAfter string          `json:"loadavg_after"`
	Switch       *cutover.Result `json:"switch"`
	// WholeCounts is what a whole-table count of the tables the final port
	// moved rows into costs on each side (measured after the switch): the
	// reason the switch's verification does not make one.
	WholeCounts *wholeCounts `json:"whole_counts,omitempty"`
}

// wholeCounts times count(*) over whole tables on both sides.
type wholeCounts struct {
	Tables     int   `json:"tables"`
	Rows       int64 `json:"rows"`
	SQLiteMs   int64 `json:"sqlite_ms"`
	PostgresMs int64 `json:"postgres_ms"`
}

// countWhole times count(*) of tables on the SQLite file and the target.
func countWhole(ctx context.Context, sqlitePath, pgConfig string, tables []string) (*wholeCounts, error) {
	src, err := db.OpenSQLite(ctx, sqlitePath, db.Options{ReadOnly: true})
	if err != nil {
		return nil, err
	}
	defer src.Close()
	cfg, err := config.Load(pgConfig)
	if err != nil {
		return nil, err
	}
	target, err := cfg.MainDatabase()
	if err != nil {
		return nil, err
	}
	tgt, err := db.Open(ctx, target, db.Options{ReadOnly: true})
	if err != nil {
		return nil, err
	}
	defer tgt.Close()
	w := &wholeCounts{Tables: len(tables)}
	for _, side := range []*db.DB{src, tgt} {
		t0 := time.Now()
		for _, t := range tables {
			var n int64
			if err := side.QueryRowContext(ctx, "SELECT count(*) FROM "+db.QuoteIdent(t)).Scan(&n); err != nil {
				return nil, err
			}
			if side == src {
				w.Rows += n
			}
		}
		if side == src {
			w.SQLiteMs = time.Since(t0).Milliseconds()
		} else {
			w.PostgresMs = time.Since(t0).Milliseconds()
		}
	}
	return w, nil
}

// BenchSwitch measures port_db --switch-config under load (hsload
// bench-switch) and prints the result to stdout.
func BenchSwitch(ctx context.Context, stdout io.Writer, o BenchSwitchOptions) error {
	hs, err := proc.FindEngine(o.Homeserver)
	if err != nil {
		return cli.Usagef("homeserver not found: build it next to hsload (go build -o bin/ ./cmd/...) or pass --homeserver")
	}
	if o.PGURL == "" {
		cluster, err := pgcluster.Start()
		if err != nil {
			return fmt.Errorf("no PostgreSQL: pass --postgres-url or install initdb/pg_ctl: %w", err)
		}
		defer cluster.Stop()
		o.PGURL = cluster.AdminURL()
	}
	if err := os.MkdirAll(o.Work, 0o755); err != nil {
		return err
	}
	src := o.Source
	if src == "" {
		if src, err = switchSource(ctx, stdout, o.Work, o.Events); err != nil {
			return err
		}
	}
	run := filepath.Join(o.Work, "run")
	sup := &proc.Supervisor{Launcher: proc.Launcher{Homeserver: hs}, Timeout: 120 * time.Second, Kill: true}
	cfgPath := filepath.Join(run, "homeserver.yaml")
	if pl, err := proc.Discover(proc.Selection{Config: cfgPath}); err == nil {
		_ = sup.Stop(ctx, pl) // a run killed before
	}
	if err := os.RemoveAll(run); err != nil {
		return err
	}
	if err := os.MkdirAll(run, 0o755); err != nil {
		return err
	}
	res := benchSwitchResult{Events: o.Events, Clients: o.Clients, Verify: o.Verify}
	fmt.Fprintf(stdout, "copying %s...\n", src)
	live := filepath.Join(run, "homeserver.db")
	if out, err := exec.CommandContext(ctx, "cp", src, live).CombinedOutput(); err != nil {
		return fmt.Errorf("copy the source: %v: %s", err, out)
	}
	if st, err := os.Stat(live); err == nil {
		res.SQLiteMB = float64(st.Size()) / 1e6
	}
	if out, err := exec.CommandContext(ctx, hs, "-c", cfgPath, "--generate-config", "--server-name", "example.org", "--report-stats", "no").CombinedOutput(); err != nil {
		return fmt.Errorf("generate the config: %v: %s", err, out)
	}
	port, err := freeLoopbackPort()
	if err != nil {
		return err
	}
	data, err := os.ReadFile(cfgPath)
	if err != nil {
		return err
	}
	text := strings.Replace(string(data), "port: 8008", fmt.Sprintf("port: %d", port), 1)
	text = strings.Replace(text, "bind_addresses: ['::1', '127.0.0.1']", "bind_addresses: ['127.0.0.1']", 1)
	if err := os.WriteFile(cfgPath, []byte(text), 0o600); err != nil {
		return err
	}
	pgConfig, err := benchTarget(ctx, o.PGURL, filepath.Join(run, "postgres.yaml"))
	if err != nil {
		return err
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return err
	}
	pl, err := proc.Discover(proc.Selection{Config: cfgPath})
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, "starting the homeserver on SQLite...")
	if err := sup.Start(ctx, pl); err != nil {
		return err
	}
	defer func() {
		if pl, err := proc.Discover(proc.Selection{Config: cfgPath}); err == nil {
			_ = sup.Stop(context.WithoutCancel(ctx), pl)
		}
	}()

	// The clients send until the switch stops the homeserver.
	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	var (
		wg  sync.WaitGroup
		rep *Report
	)
	// The switch begins once the clients send (registering them, creating
	// and joining their rooms takes a while).
	sending := make(chan struct{})
	var once sync.Once
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer once.Do(func() { close(sending) })
		rep, _ = Run(loadCtx, Params{URL: config.BaseURL(cfg.Listeners), SharedSecret: cfg.RegistrationSharedSecret,
			Users: o.Clients * 2, Rooms: o.Clients, Members: 4, Messages: 10_000_000, Concurrency: o.Clients, Prefix: "bench",
			Begin: func(phase string) {
				if phase == "send" {
					once.Do(func() { close(sending) })
				}
			}})
	}()
	fmt.Fprintf(stdout, "%d clients registering and joining their rooms...\n", o.Clients)
	select {
	case <-sending:
	case <-ctx.Done():
		return ctx.Err()
	}
	t0 := time.Now()
	sw, err := cutover.Run(ctx, cutover.Options{SQLitePath: live, PostgresConfig: pgConfig, Config: cfgPath,
		Launcher: proc.Launcher{Homeserver: hs}, Timeout: 120 * time.Second, Jobs: o.Jobs, BatchSize: 10000, Verify: o.Verify,
		Progress: func(ev cutover.Event) {
			switch ev.Type {
			case "phase":
				if ev.Phase == cutover.PhaseStop {
					res.LoadAvg = loadAvg()
					stopLoad()
					wg.Wait()
				}
				fmt.Fprintf(stdout, "%7.1fs == %s\n", time.Since(t0).Seconds(), ev.Phase)
			case "pass", "process", "rollback":
				fmt.Fprintf(stdout, "%7.1fs    %s\n", time.Since(t0).Seconds(), ev.Message)
			}
		}})
	stopLoad()
	wg.Wait()
	res.LoadAvgAfter = loadAvg()
	res.Switch = sw
	if rep != nil {
		res.LoadError = rep.FirstError
		for _, ph := range rep.Phases {
			if ph.Name == "send" {
				res.SentDuring, res.SendErrors = ph.Requests, ph.Errors
			}
		}
	}
	if err != nil {
		return err
	}
	var moved []string
	for t := range sw.FinalTables {
		moved = append(moved, t)
	}
	sort.Strings(moved)
	if res.WholeCounts, err = countWhole(ctx, live, pgConfig, moved); err != nil {
		return err
	}
	if o.JSON {
		return json.NewEncoder(stdout).Encode(res)
	}
	fmt.Fprintf(stdout, "\n%d messages (%.0f MB of SQLite), %d clients sending during the pre-copy (%d messages sent)\n",
		res.Events, res.SQLiteMB, res.Clients, res.SentDuring)
	if res.LoadError != "" {
		fmt.Fprintf(stdout, "the clients' first error: %s\n", res.LoadError)
	}
	for i, p := range sw.PreCopy {
		fmt.Fprintf(stdout, "pre-copy pass %d: snapshot %s %.1fs, %d rows, %.1fs in all\n", i+1, p.Snapshot.Method, float64(p.Snapshot.Millis)/1000, p.Rows, float64(p.Millis)/1000)
	}
	for _, p := range sw.Phases {
		fmt.Fprintf(stdout, "%-12s %8.2fs\n", p.Name, float64(p.Millis)/1000)
	}
	fmt.Fprintf(stdout, "final port: %d rows, verified: %s\n", sw.FinalRows, o.Verify)
	if fp := sw.FinalPort; fp != nil {
		fmt.Fprintf(stdout, "  pages checked: %s; verified: %s; re-copied tables kept (unchanged): %d\n", fp.PageCheck, fp.Verified, len(fp.Kept))
		for _, p := range fp.Phases {
			fmt.Fprintf(stdout, "  %-14s %8.2fs\n", p.Name, float64(p.Millis)/1000)
		}
		for _, p := range fp.Steps {
			fmt.Fprintf(stdout, "    checks: %-14s %8.2fs\n", p.Name, float64(p.Millis)/1000)
		}
	}
	fmt.Fprintf(stdout, "downtime: %.2fs\nload average at the stop: %s; after: %s\n", sw.Downtime.Seconds(), res.LoadAvg, res.LoadAvgAfter)
	if w := res.WholeCounts; w != nil {
		fmt.Fprintf(stdout, "for reference, count(*) of the %d tables the final port moved rows into (%d rows): SQLite %.2fs, PostgreSQL %.2fs\n",
			w.Tables, w.Rows, float64(w.SQLiteMs)/1000, float64(w.PostgresMs)/1000)
	}
	return nil
}

// benchSource is the generated database of n messages in work (made once).
func switchSource(ctx context.Context, stdout io.Writer, work string, n int) (string, error) {
	src := filepath.Join(work, fmt.Sprintf("source-%d.db", n))
	if _, err := os.Stat(src); err == nil {
		return src, nil
	}
	fmt.Fprintf(stdout, "generating %s (%d messages)...\n", src, n)
	tmp := src + ".tmp"
	_ = os.Remove(tmp)
	p := gen.Params{ServerName: "example.org", Users: max(n/1000, 50), Rooms: max(n/5000, 10), Messages: n, MembersPerRoom: 20, Backfilled: 10, Seed: 1, TxSize: 20000}
	if _, err := gen.Fill(ctx, config.Database{Name: config.EngineSQLite, Args: map[string]string{"database": tmp}}, 0, p); err != nil {
		return "", err
	}
	return src, os.Rename(tmp, src)
}

// benchTarget creates an empty database for the switch and writes its
// config.
func benchTarget(ctx context.Context, pgURL, path string) (string, error) {
	admin, err := pgx.Connect(ctx, pgURL)
	if err != nil {
		return "", err
	}
	defer admin.Close(ctx)
	name := "hsops_bench_switch"
	_, _ = admin.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name+" ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"); err != nil {
		return "", err
	}
	u, err := url.Parse(pgURL)
	if err != nil {
		return "", err
	}
	u.Path = "/" + name
	cc, err := pgx.ParseConfig(u.String())
	if err != nil {
		return "", err
	}
	var y strings.Builder
	fmt.Fprintf(&y, "server_name: example.org\ndatabase:\n  name: psycopg2\n  args:\n    host: %q\n    port: %d\n    user: %q\n    dbname: %q\n    sslmode: disable\n",
		cc.Host, cc.Port, cc.User, name)
	if cc.Password != "" {
		fmt.Fprintf(&y, "    password: %q\n", cc.Password)
	}
	return path, os.WriteFile(path, []byte(y.String()), 0o600)
}

func freeLoopbackPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func loadAvg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
