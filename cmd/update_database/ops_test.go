package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"hsops/internal/config"
	"hsops/internal/db"
	"hsops/internal/dbtest"
	"hsops/internal/testbin"
	"hsops/internal/usertest"
	"hsops/schema"
	"hsops/schema/engine"
)

// runTool runs the built tool and returns its output and exit code.
func runTool(t *testing.T, cmd *exec.Cmd) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("%s: %v", cmd.Path, err)
	}
	return out.String(), errOut.String(), code
}

// listing is the names, modes and contents of the files of a directory.
func listing(t *testing.T, dir string) string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		info, _ := e.Info()
		out = append(out, fmt.Sprintf("%s %v %x", e.Name(), info.Mode(), sha256.Sum256(data)))
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}

// TestNotWritable_RefusedAsPermission runs the upgrade, the repair and the
// rollback as a user who cannot write the SQLite database (a root-owned
// file in a writable directory), then one who cannot create the lock file
// (a file of its own in a root-owned directory): each is refused before
// anything is written, in the permission class (15), naming the user and
// the owner, and leaves nothing behind (no rollback copy, no lock file).
func TestNotWritable_RefusedAsPermission(t *testing.T) {
	nobody := usertest.Nobody(t)
	dir := usertest.Dir(t)
	bin := testbin.Command(t, dir, "hsops/cmd/update_database")
	data := filepath.Join(dir, "data")
	if err := os.Mkdir(data, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(data, "homeserver.db")
	ctx := context.Background()
	d, err := db.OpenSQLite(ctx, path, db.Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := engine.Schema().Apply(ctx, d, schema.Options{Target: 79}); err != nil {
		t.Fatal(err)
	}
	// Duplicated edges: the repair has rows to remove.
	if _, err := d.Exec("INSERT INTO state_group_edges (state_group, prev_state_group) VALUES (2, 1), (2, 1)"); err != nil {
		t.Fatal(err)
	}
	d.Close()
	cfg := filepath.Join(dir, "hs.yaml")
	if err := os.WriteFile(cfg, []byte("server_name: example.org\ndatabase:\n  name: sqlite3\n  args:\n    database: "+path+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	commands := [][]string{
		{"--database-config", cfg},
		{"repair", "state-group-edges", "--database-config", cfg},
		{"rollback", "--database-config", cfg, "--to-schema", "78", "--yes"},
	}
	for _, tc := range []struct {
		name    string
		setup   func() error
		message string
		hint    string
	}{
		{"a file of root's in a writable directory", func() error { return os.Chmod(data, 0o777) },
			fmt.Sprintf(`update_database: error: SQLite database %q is not writable by user nobody \(uid %d\): it belongs to root \(uid 0\), mode 0644`, path, nobody.UID),
			fmt.Sprintf(`hint: nothing was changed: run it as root (the owner), or let nobody write there (e.g. chown nobody %q)`, path)},
		{"its own file in a directory of root's", func() error {
			if err := os.Chmod(data, 0o755); err != nil {
				return err
			}
			return os.Chown(path, nobody.UID, nobody.GID)
		}, fmt.Sprintf(`update_database: error: the directory %q of SQLite database %q is not writable by user nobody \(uid %d\): it belongs to root \(uid 0\), mode 0755; the lock file, SQLite's journal and a rollback's copy are written there`, data, path, nobody.UID),
			fmt.Sprintf(`hint: nothing was changed: run it as root (the owner), or let nobody write there (e.g. chown nobody %q)`, data)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.setup(); err != nil {
				t.Fatal(err)
			}
			before := listing(t, data)
			for _, args := range commands {
				cmd := nobody.Command(bin, args...)
				_, stderr, code := runTool(t, cmd)
				if code != 15 {
					t.Errorf("%s: exit %d, want 15 (permission)\n%s", args[0], code, stderr)
				}
				if !regexp.MustCompile(`(?m)^` + tc.message + `$`).MatchString(stderr) {
					t.Errorf("%s: stderr does not say %q:\n%s", args[0], tc.message, stderr)
				}
				if !strings.Contains(stderr, tc.hint) {
					t.Errorf("%s: no hint %q:\n%s", args[0], tc.hint, stderr)
				}
				if after := listing(t, data); after != before {
					t.Errorf("%s changed the directory:\nbefore:\n%s\nafter:\n%s", args[0], before, after)
				}
			}
		})
	}
}

// slowUpdates starts update_database --run-background-updates --json on a
// database with many batches of work and returns once its first batch has
// committed, with the process and the rest of its standard output.
func slowUpdates(t *testing.T, bin string, e db.Engine) (*exec.Cmd, string, *bytes.Buffer, *bufio.Scanner) {
	t.Helper()
	ctx := context.Background()
	tg := dbtest.New(t, e)
	d := tg.Open(t)
	if _, err := engine.Schema().Apply(ctx, d, schema.Options{Target: 68}); err != nil {
		t.Fatal(err)
	}
	seedForUpdates(t, d, 2000)
	if _, err := engine.Schema().Apply(ctx, d, schema.Options{ServerName: "example.org"}); err != nil {
		t.Fatal(err)
	}
	d.Close()
	cfg := writeConfig(t, t.TempDir(), tg.Config)
	cmd := exec.Command(bin, "--database-config", cfg, "--run-background-updates", "--json")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		var ev schema.UpdateEvent
		if json.Unmarshal(sc.Bytes(), &ev) == nil && ev.Type == "batch" {
			return cmd, cfg, &stderr, sc
		}
	}
	t.Fatalf("no batch was reported: %s", stderr.String())
	return nil, "", nil, nil
}

// TestLockHolder_NamedAndInterrupted runs the repair and the rollback while
// another update_database runs the background updates (holding the schema
// lock, and on SQLite the file): both say that process holds the lock (its
// tool, pid and since when) and to wait for it, not to stop a homeserver.
// Then Ctrl-C stops that run with one line saying what it committed.
func TestLockHolder_NamedAndInterrupted(t *testing.T) {
	bin := buildTool(t)
	dbtest.Engines(t, func(t *testing.T, e db.Engine) {
		holder, cfg, holderErr, rest := slowUpdates(t, bin, e)
		// Stopped, the run keeps its lock (and on SQLite the file) for as
		// long as the checks below take, however loaded the machine.
		if err := holder.Process.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		held := regexp.MustCompile(fmt.Sprintf(`(?m)^update_database: error: database is locked by another process: held by update_database --run-background-updates \(pid %d on [^,]+, since \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\)$`, holder.Process.Pid))
		for _, args := range [][]string{
			{"repair", "state-group-edges", "--database-config", cfg},
			{"rollback", "--database-config", cfg, "--to-schema", "80", "--yes", "--no-backup"},
		} {
			_, stderr, code := runTool(t, exec.Command(bin, args...))
			if code != 8 {
				t.Errorf("%s while the updates run: exit %d, want 8 (locked)\n%s", args[0], code, stderr)
			}
			if !held.MatchString(stderr) || !strings.Contains(stderr, "hint: nothing was changed: wait for that process to finish, then run the same command again") {
				t.Errorf("%s does not name the holder and say to wait for it:\n%s", args[0], stderr)
			}
			if strings.Contains(stderr, "synctl") {
				t.Errorf("%s tells to stop a homeserver:\n%s", args[0], stderr)
			}
		}

		// Ctrl-C, delivered as the run goes on.
		if err := holder.Process.Signal(os.Interrupt); err != nil {
			t.Fatal(err)
		}
		if err := holder.Process.Signal(syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		for rest.Scan() {
		}
		err := holder.Wait()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 130 {
			t.Fatalf("interrupted run: %v, want exit 130\n%s", err, holderErr.String())
		}
		// Between two updates there is no batch in flight to speak of.
		want := regexp.MustCompile(`^update_database: interrupted: (\d+ background updates? finished(; \w+ kept its \d+ committed batch(es)? \(\d+ items?\))?|\w+ kept its \d+ committed batch(es)? \(\d+ items?\)), run the same command again\n$`)
		if got := holderErr.String(); !want.MatchString(got) || strings.Contains(got, "context canceled") {
			t.Errorf("an interrupted run says:\n%s", got)
		}
	})
}

// TestInterrupt_UpgradeSaysWhatIsCommitted interrupts an upgrade of a
// PostgreSQL database while one of its versions waits for a lock another
// session holds: the versions before it are committed, that one was rolled
// back, and the tool says so in one line (exit 130). A rollback interrupted
// the same way has changed nothing.
func TestInterrupt_UpgradeSaysWhatIsCommitted(t *testing.T) {
	bin := buildTool(t)
	ctx := context.Background()
	tg := dbtest.New(t, db.Postgres)
	d := tg.Open(t)
	if _, err := engine.Schema().Apply(ctx, d, schema.Options{Target: 81}); err != nil {
		t.Fatal(err)
	}
	cfg := writeConfig(t, t.TempDir(), tg.Config)

	// interrupt runs the tool until it waits for a lock, then sends SIGINT.
	// Only the sessions this run opened count: the server session of a run
	// interrupted before can outlive it, waiting for a lock until it is
	// released, then running on into the next lock the test holds.
	interrupt := func(args ...string) (string, int) {
		t.Helper()
		var since time.Time
		if err := d.QueryRow("SELECT clock_timestamp()").Scan(&since); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, args...)
		var stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = io.Discard, &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		waiting := false
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline) && !waiting; time.Sleep(20 * time.Millisecond) {
			if err := d.QueryRow(`SELECT count(*) > 0 FROM pg_stat_activity WHERE datname = current_database()
				AND application_name LIKE 'hsops update_database%' AND wait_event_type = 'Lock' AND backend_start >= $1`, since).Scan(&waiting); err != nil {
				t.Fatal(err)
			}
		}
		if !waiting {
			_ = cmd.Process.Kill()
			t.Fatalf("%v never waited for the lock: %s", args, stderr.String())
		}
		if err := cmd.Process.Signal(os.Interrupt); err != nil {
			t.Fatal(err)
		}
		err := cmd.Wait()
		var ee *exec.ExitError
		code := 0
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		}
		return stderr.String(), code
	}
	// hold takes a lock on a table in an open transaction of its own.
	hold := func(table string) (release func()) {
		t.Helper()
		tx, err := d.Begin()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec("LOCK TABLE " + table + " IN ACCESS SHARE MODE"); err != nil {
			t.Fatal(err)
		}
		return func() { _ = tx.Rollback() }
	}
	version := func() int {
		t.Helper()
		var v int
		if err := d.QueryRow("SELECT version FROM schema_version").Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}

	// 83 drops event_txn_id, which the other session reads.
	release := hold("event_txn_id")
	stderr, code := interrupt("--database-config", cfg)
	release()
	if code != 130 || stderr != "update_database: interrupted: the database is at schema 82 (1 version committed; schema 83 was rolled back), run the same command again\n" {
		t.Errorf("interrupted upgrade: exit %d, said:\n%s", code, stderr)
	}
	if v := version(); v != 82 {
		t.Errorf("after the interrupted upgrade the database is at %d, want 82", v)
	}

	// The rollback to 81 drops timeline_gaps, which the other session reads.
	release = hold("timeline_gaps")
	stderr, code = interrupt("rollback", "--database-config", cfg, "--to-schema", "81", "--yes", "--force", "--no-backup")
	release()
	if code != 130 || stderr != "update_database: interrupted: nothing was changed (the rollback runs in one transaction), run the same command again\n" {
		t.Errorf("interrupted rollback: exit %d, said:\n%s", code, stderr)
	}
	if v := version(); v != 82 {
		t.Errorf("after the interrupted rollback the database is at %d, want 82", v)
	}
}

// TestBackgroundEnabled_FromConfig: background enabled finds the homeserver
// at the config's client listener (no --server), and a refused token names
// where it came from, in the rejected class.
func TestBackgroundEnabled_FromConfig(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/_synapse/admin/v1/background_updates/enabled" {
			http.NotFound(w, r)
			return
		}
		if r.Header.Get("Authorization") != "Bearer admin-token" {
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"errcode":"M_UNKNOWN_TOKEN","error":"Unknown access token"}`)
			return
		}
		fmt.Fprint(w, `{"enabled":true}`)
	})}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	port := l.Addr().(*net.TCPAddr).Port
	cfg := filepath.Join(t.TempDir(), "hs.yaml")
	yaml := fmt.Sprintf("server_name: example.org\nlisteners:\n  - port: %d\n    bind_addresses: ['127.0.0.1']\n    type: http\n    resources:\n      - names: [client]\ndatabase:\n  name: sqlite3\n  args:\n    database: /nonexistent/homeserver.db\n", port)
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := config.BaseURL(mustLoad(t, cfg).Listeners); got != fmt.Sprintf("http://127.0.0.1:%d", port) {
		t.Fatalf("the config's listener is %q", got)
	}
	call := func(env string, args ...string) (string, string, int) {
		t.Helper()
		t.Setenv("HSOPS_ACCESS_TOKEN", env)
		var out, errOut bytes.Buffer
		code := run(args, strings.NewReader(""), &out, &errOut)
		return out.String(), errOut.String(), code
	}

	out, stderr, code := call("admin-token", "background", "enabled", "-c", cfg)
	if code != 0 || out != fmt.Sprintf("background updates are enabled on http://127.0.0.1:%d\n", port) {
		t.Errorf("with the config only: exit %d\n%s%s", code, out, stderr)
	}
	_, stderr, code = call("wrong", "background", "enabled", "-c", cfg)
	want := fmt.Sprintf("update_database: error: the homeserver at http://127.0.0.1:%d refused the access token from HSOPS_ACCESS_TOKEN: 401 Unauthorized M_UNKNOWN_TOKEN Unknown access token\n", port)
	if code != 24 || !strings.HasPrefix(stderr, want) || !strings.Contains(stderr, "hint: the token is not valid on this homeserver") {
		t.Errorf("a wrong token: exit %d, said:\n%s", code, stderr)
	}
	_, stderr, code = call("", "background", "enabled", "-c", cfg, "--access-token", "wrong")
	if code != 24 || !strings.Contains(stderr, "refused the access token from --access-token") {
		t.Errorf("a wrong --access-token: exit %d, said:\n%s", code, stderr)
	}
	_, stderr, code = call("", "background", "enabled", "-c", cfg)
	if code != 2 || !strings.Contains(stderr, "an admin access token is required") || !strings.Contains(stderr, "hint: homeserver register-user -c "+cfg+" --user NAME --admin") {
		t.Errorf("no token: exit %d, said:\n%s", code, stderr)
	}
}

func mustLoad(t *testing.T, path string) *config.Config {
	t.Helper()
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}
