package journey

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"hsops/internal/config"
	"hsops/internal/db"
	"hsops/internal/dbtest"
	"hsops/internal/pgtest"
)

// TestJourney_RehearseWhileServing rehearses the upgrade of the database
// the engine is serving while hsload writes to it through the client API:
// every rehearsal passes, and the load sees no error. On PostgreSQL the
// homeserver is connected, so the copy is made from a snapshot, and checked
// against the source at that snapshot table by table (checksums).
//
// It lasts as long as its load must (outlasting a rehearsal on a quiet
// machine), so -short leaves it out: internal/rehearse's tests rehearse
// while a stand-in homeserver writes, in the fast loop.
func TestJourney_RehearseWhileServing(t *testing.T) {
	if testing.Short() {
		t.Skip("a load that outlasts a rehearsal (-short)")
	}
	t.Parallel()
	dbtest.Engines(t, func(t *testing.T, e db.Engine) {
		var pg pgtest.Database
		if e == db.Postgres {
			pg = pgtest.NewDatabase(t) // before the operator: its cleanup stops the homeserver first
		}
		o := newOperator(t)
		o.generate()
		// Passwords hashed at Synapse's cost here: hsload's registrations
		// then take seconds, and the load outlasts the first rehearsal
		// (checked below) on a quiet machine too.
		o.editConfig(func(s string) string { return strings.Replace(s, "bcrypt_rounds: 4\n", "", 1) })
		rehearse := []string{"rehearse", "-c", o.config}
		copied := `copy: (SQLite online backup|file copy under SQLite's read lock)`
		if e == db.Postgres {
			o.usePostgres(pg)
			rehearse = append(rehearse, "--verify-copy")
			copied = `copy: COPY from one exported snapshot, .* every table checked against the source\)`
		}
		o.run(0, "hsload", "generate", "-c", o.config, "--users", "20", "--rooms", "4", "--members", "10", "--messages", "3000")
		o.run(0, "synctl", "start", o.config)
		// The engine's background updates are paused (admin API), so the job
		// queued below is still pending for the rehearsals to run on the copy.
		cfg, err := config.Load(o.config)
		if err != nil {
			t.Fatal(err)
		}
		server := config.BaseURL(cfg.Listeners)
		token := o.must(o.run(0, "homeserver", "register-user", "-c", o.config, "--user", "ops", "--password", "ops-password", "--admin"), `access token: (\S+)`)
		o.run(0, "update_database", "background", "enabled", "off", "--server", server, "--access-token", token)
		o.run(0, "update_database", "background", "start-job", "populate_stats_process_rooms", "-c", o.config)

		load := exec.Command(filepath.Join(binDir, "hsload"), "http", "-c", o.config, "--users", "8", "--rooms", "2", "--members", "8",
			"--messages", "1500", "--reads", "200", "--searches", "20", "--concurrency", "8", "--prefix", "live")
		load.Dir = o.dir
		var loadOut bytes.Buffer
		load.Stdout, load.Stderr = &loadOut, &loadOut
		if err := load.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- load.Wait() }()

		// Rehearsals one after another while the load runs: three are
		// enough (the transcript is written once, whatever their number).
		enough := 3
		var during, rehearsals int
		var loadErr error
		running := true
		for running && during < enough {
			out := o.run(0, "update_database", rehearse...)
			o.must(out, copied)
			o.must(out, `populate_stats_process_rooms +ok`)
			o.must(out, `result: passed`)
			rehearsals++
			select {
			case loadErr = <-exited:
				running = false
			default:
				during++ // the load was still running when this rehearsal ended
			}
		}
		if running {
			loadErr = <-exited
		}
		if loadErr != nil {
			t.Fatalf("hsload http failed while the rehearsals ran: %v\n%s", loadErr, loadOut.String())
		}
		if during == 0 {
			t.Fatalf("no rehearsal ran while the load was writing (%d rehearsals)", rehearsals)
		}
		o.must(loadOut.String(), `send +1500 +0 `)
		o.script.WriteString("$ hsload http ... (meanwhile)\n" + loadOut.String() + "\n")
		t.Logf("%d rehearsals, %d while the load ran", rehearsals, during)
		o.run(0, "update_database", "background", "enabled", "on", "--server", server, "--access-token", token)
		o.run(0, "synctl", "stop", o.config)
		left, _ := filepath.Glob(filepath.Join(o.dir, "hs", "hsops-rehearse*"))
		if len(left) > 0 {
			t.Fatalf("scratch copies left: %v", left)
		}
		if e == db.Postgres {
			o.must(o.run(0, "update_database", "rehearse", "-c", o.config, "--clean"), `no scratch copy to remove`)
		}
	})
}

// TestJourney_RehearseKilled kills rehearsals at several points, Synapse's
// included: the original is never changed, at most the scratch copy is
// left, with its recognisable name, and the next rehearsal removes it.
func TestJourney_RehearseKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("kills rehearsals at each step (-short)")
	}
	o := newOperator(t)
	o.generate()
	o.run(0, "hsload", "generate", "-c", o.config, "--schema-version", "72", "--users", "20", "--rooms", "4", "--members", "10", "--messages", "3000")
	live := filepath.Join(o.dir, "hs", "homeserver.db")
	sum := func() [32]byte {
		data, err := os.ReadFile(live)
		if err != nil {
			t.Fatal(err)
		}
		return sha256.Sum256(data)
	}
	before := sum()
	// The same database as Synapse's, for the stand-in's rehearsals.
	synDir := filepath.Join(o.dir, "syn")
	if err := os.MkdirAll(synDir, 0o755); err != nil {
		t.Fatal(err)
	}
	synDB := filepath.Join(synDir, "homeserver.db")
	data, _ := os.ReadFile(live)
	if err := os.WriteFile(synDB, data, 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := db.OpenSQLite(context.Background(), synDB, db.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// Without the engine's mark and its queue (the stand-in has handlers
	// for its own updates only).
	if _, err := d.Exec("DROP TABLE hsops_engine; DELETE FROM background_updates"); err != nil {
		t.Fatal(err)
	}
	d.Close()
	synConfig := filepath.Join(synDir, "homeserver.yaml")
	if err := os.WriteFile(synConfig, []byte("server_name: example.org\ndatabase:\n  name: sqlite3\n  args:\n    database: "+synDB+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	synBefore, _ := os.ReadFile(synDB)
	_, file, _, _ := runtime.Caller(0)
	python := filepath.Join(filepath.Dir(file), "..", "testdata", "fakesynapse", "python")

	for _, c := range []struct {
		config, marker string
		args           []string
		env            []string
	}{
		{o.config, "copying master", nil, nil},
		{o.config, "upgrading the copy: schema deltas", nil, nil},
		{o.config, "upgrading the copy: background updates", nil, nil},
		{synConfig, "upgrading the copy: background updates", []string{"--python", python}, []string{"FAKE_SYNAPSE_BATCH_SIZE=1", "FAKE_SYNAPSE_BATCH_MS=500"}},
	} {
		args := append([]string{"rehearse", "-c", c.config}, c.args...)
		cmd := exec.Command(filepath.Join(binDir, "update_database"), args...)
		cmd.Dir = o.dir
		cmd.Env = append(append(os.Environ(), c.env...), "HSOPS_JOURNEY_MARK="+o.dir)
		stderr, err := cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(stderr)
		seen := false
		for sc.Scan() {
			if strings.Contains(sc.Text(), c.marker) {
				seen = true
				break
			}
		}
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
		if !seen {
			t.Fatalf("rehearse %v ended before %q", args, c.marker)
		}
		dir := filepath.Dir(c.config)
		left, _ := filepath.Glob(filepath.Join(dir, "hsops-rehearse*"))
		if len(left) > 1 {
			t.Fatalf("killed at %q: more than the scratch copy left: %v", c.marker, left)
		}
		for _, l := range left {
			if !strings.HasPrefix(filepath.Base(l), "hsops-rehearse-homeserver.db-") {
				t.Fatalf("killed at %q: unexpected leftover %s", c.marker, l)
			}
		}
		fmt.Fprintf(&o.script, "$ update_database %s (killed at %q)\nleft: %v\n\n", strings.ReplaceAll(strings.Join(args, " "), o.dir, "/srv/matrix"), c.marker,
			strings.ReplaceAll(fmt.Sprint(left), o.dir, "/srv/matrix"))
		if c.args != nil {
			waitNoSynapse(t, o.dir)
		}
		// The next rehearsal removes what the killed one left.
		out := o.run(0, "update_database", args...)
		if len(left) == 1 {
			o.must(out, `removed the stale scratch copy .*hsops-rehearse-homeserver.db-`)
		}
		if left, _ := filepath.Glob(filepath.Join(dir, "hsops-rehearse*")); len(left) > 0 {
			t.Fatalf("left after the next rehearsal: %v", left)
		}
	}
	if sum() != before {
		t.Fatal("the original database changed")
	}
	if after, _ := os.ReadFile(synDB); !bytes.Equal(after, synBefore) {
		t.Fatal("the Synapse database changed")
	}
}

// waitNoSynapse waits for the stand-in a killed rehearsal started to die
// with it (its parent-death signal), and fails if it outlives it. The
// stand-in is told by the mark its environment inherited.
func waitNoSynapse(t *testing.T, mark string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		found := ""
		procs, _ := filepath.Glob("/proc/[0-9]*/environ")
		for _, p := range procs {
			data, err := os.ReadFile(p)
			if err == nil && bytes.Contains(data, []byte("HSOPS_JOURNEY_MARK="+mark+"\x00")) {
				cmdline, _ := os.ReadFile(filepath.Join(filepath.Dir(p), "cmdline"))
				if bytes.Contains(cmdline, []byte("update_synapse_database")) {
					found = p
				}
			}
		}
		if found == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the stand-in Synapse outlived the killed rehearsal: %s", found)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestJourney_RehearseKilled_Postgres kills rehearsals of a PostgreSQL
// database during the upgrade of its copy: the source is unchanged, the
// scratch database is left under its recognisable name, and the next
// rehearsal drops it.
func TestJourney_RehearseKilled_Postgres(t *testing.T) {
	if testing.Short() {
		t.Skip("kills rehearsals at each step (-short)")
	}
	pg := pgtest.NewDatabase(t)
	o := newOperator(t)
	o.generate()
	o.usePostgres(pg)
	o.run(0, "hsload", "generate", "-c", o.config, "--schema-version", "72", "--users", "20", "--rooms", "4", "--members", "10", "--messages", "3000")
	d := o.open()
	before := dbtest.Contents(t, d)
	d.Close()
	scratches := func() []string {
		d := o.open()
		defer d.Close()
		rows, err := d.Query("SELECT datname FROM pg_database WHERE datname LIKE 'hsops\\_rehearse%' AND datname LIKE '%' || $1 || '%'", pg.Name[:20])
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var n string
			if err := rows.Scan(&n); err != nil {
				t.Fatal(err)
			}
			out = append(out, n)
		}
		return out
	}
	for _, marker := range []string{"upgrading the copy: schema deltas", "upgrading the copy: background updates"} {
		args := []string{"rehearse", "-c", o.config, "--snapshot-copy"}
		cmd := exec.Command(filepath.Join(binDir, "update_database"), args...)
		cmd.Dir = o.dir
		stderr, err := cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(stderr)
		seen := false
		for sc.Scan() {
			if strings.Contains(sc.Text(), marker) {
				seen = true
				break
			}
		}
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
		if !seen {
			t.Fatalf("rehearse ended before %q", marker)
		}
		left := scratches()
		fmt.Fprintf(&o.script, "$ update_database %s (killed at %q)\nleft: %v\n\n", strings.ReplaceAll(strings.Join(args, " "), o.dir, "/srv/matrix"), marker, left)
		if len(left) != 1 {
			t.Fatalf("killed at %q: want the scratch database left, got %v", marker, left)
		}
		o.must(o.run(0, "update_database", "rehearse", "-c", o.config), `removed the stale scratch copy hsops_rehearse_`)
		if left := scratches(); len(left) > 0 {
			t.Fatalf("left after the next rehearsal: %v", left)
		}
	}
	d = o.open()
	defer d.Close()
	if after := dbtest.Contents(t, d); after != before {
		t.Fatalf("the source changed:\n%s", dbtest.DiffLines(before, after))
	}
}
