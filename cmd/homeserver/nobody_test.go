package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"hsops/internal/config"
	"hsops/internal/db"
	"hsops/internal/usertest"
	"hsops/schema"
	"hsops/schema/engine"
)

// asNobody is a homeserver case run as nobody: in a directory every user
// may write, with the homeserver binary copied there.
type asNobody struct {
	user usertest.User
	dir  string
	bin  string
	port int
}

func newAsNobody(t *testing.T) *asNobody {
	t.Helper()
	u := usertest.Nobody(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := usertest.Dir(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	c := &asNobody{user: u, dir: dir, bin: usertest.Install(t, dir, "homeserver", exe), port: port}
	c.write(t, "hs.yaml", fmt.Sprintf(`server_name: example.org
report_stats: false
pid_file: homeserver.pid
listeners:
  - port: %d
    type: http
    bind_addresses: ['127.0.0.1']
database:
  name: sqlite3
  args:
    database: homeserver.db
`, port), 0o644)
	return c
}

func (c *asNobody) write(t *testing.T, name, content string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(c.dir, name)
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

// database creates the engine's database as root (0644: nobody may read
// it, not write it).
func (c *asNobody) database(t *testing.T) string {
	t.Helper()
	p := filepath.Join(c.dir, "homeserver.db")
	ctx := context.Background()
	d, err := db.Open(ctx, config.Database{Name: config.EngineSQLite, Args: map[string]string{"database": p}}, db.Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := engine.Schema().Apply(ctx, d, schema.Options{ServerName: "example.org"}); err != nil {
		t.Fatal(err)
	}
	d.Close()
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// run runs the homeserver as nobody in the directory and returns its exit
// code and stderr; a homeserver still running after a while (serving
// where it should have refused) fails the test.
func (c *asNobody) run(t *testing.T, args ...string) (int, string) {
	t.Helper()
	cmd := c.user.Command(c.bin, args...)
	cmd.Dir = c.dir
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatal(err)
		}
		return cmd.ProcessState.ExitCode(), stderr.String()
	case <-time.After(30 * time.Second):
		health := "not answering"
		if resp, err := httpClient.Get("http://127.0.0.1:" + strconv.Itoa(c.port) + "/health"); err == nil {
			health = resp.Status
			resp.Body.Close()
		}
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("homeserver %v still running after 30s (/health: %s) instead of refusing; output:\n%s", args, health, stderr.String())
	}
	return 0, ""
}

func TestStart_RefusesDatabaseItCannotWrite(t *testing.T) {
	c := newAsNobody(t)
	p := c.database(t)
	code, out := c.run(t, "-c", "hs.yaml")
	if code != 15 {
		t.Fatalf("exit %d, want 15 (permission); output:\n%s", code, out)
	}
	want := regexp.QuoteMeta(fmt.Sprintf(`homeserver: error: SQLite database %q is not writable by user nobody (uid %d): it belongs to root (uid 0), mode 0644`, p, c.user.UID)) + "\n" +
		regexp.QuoteMeta(fmt.Sprintf(`hint: nothing was changed: run it as root (the owner), or let nobody write there (e.g. chown nobody %q)`, p))
	if !regexp.MustCompile(want).MatchString(out) {
		t.Errorf("output:\n%s\nwant it to match:\n%s", out, want)
	}
	if _, err := os.Stat(filepath.Join(c.dir, "homeserver.pid")); err == nil {
		t.Error("a pid file was written")
	}
	// Once the file is the homeserver's user's, it starts.
	if err := os.Chown(p, c.user.UID, c.user.GID); err != nil {
		t.Fatal(err)
	}
	if code, out := c.run(t, "-c", "hs.yaml", "--daemonize"); code != 0 {
		t.Fatalf("after chown: exit %d:\n%s", code, out)
	}
	resp, err := httpClient.Get("http://127.0.0.1:" + strconv.Itoa(c.port) + "/health")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("/health after chown: %v", err)
	}
	resp.Body.Close()
	stopDaemon(t, filepath.Join(c.dir, "homeserver.pid"))
}

func TestStart_RefusesLogFileItCannotWrite(t *testing.T) {
	c := newAsNobody(t)
	c.write(t, "homeserver.log", "", 0o600)
	for _, args := range [][]string{{"-c", "hs.yaml"}, {"-c", "hs.yaml", "--daemonize"}} {
		code, out := c.run(t, args...)
		if code != 15 {
			t.Fatalf("%v: exit %d, want 15 (permission); output:\n%s", args, code, out)
		}
		want := fmt.Sprintf("homeserver: error: log file %q is not writable by user nobody (uid %d): it belongs to root (uid 0), mode 0600\n", filepath.Join(c.dir, "homeserver.log"), c.user.UID)
		if !bytes.Contains([]byte(out), []byte(want)) {
			t.Errorf("%v: output:\n%s\nwant:\n%s", args, out, want)
		}
	}
	if _, err := os.Stat(filepath.Join(c.dir, "homeserver.db")); err == nil {
		t.Error("the database was created before the log file was checked")
	}
}

func TestGenerateConfig_RefusesDirectoryItCannotWrite(t *testing.T) {
	c := newAsNobody(t)
	if err := os.Mkdir(filepath.Join(c.dir, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	code, out := c.run(t, "generate-config", "-c", "etc/matrix/homeserver.yaml", "--server-name", "example.org", "--report-stats", "no")
	if code != 15 {
		t.Fatalf("exit %d, want 15 (permission); output:\n%s", code, out)
	}
	etc := filepath.Join(c.dir, "etc")
	want := fmt.Sprintf(`homeserver: error: the directory %q of config file %q is not writable by user nobody (uid %d): it belongs to root (uid 0), mode 0755; the config's directory %q would be created there`,
		etc, filepath.Join(etc, "matrix", "homeserver.yaml"), c.user.UID, filepath.Join(etc, "matrix"))
	if !bytes.Contains([]byte(out), []byte(want)) {
		t.Errorf("output:\n%s\nwant:\n%s", out, want)
	}
}

var httpClient = http.Client{Timeout: 5 * time.Second}

// stopDaemon sends SIGTERM to the pid of a pid file and waits for the
// file to go.
func stopDaemon(t *testing.T, pidFile string) {
	t.Helper()
	data, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 200; i++ {
		if _, err := os.Stat(pidFile); err != nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("pid %d did not stop", pid)
}
