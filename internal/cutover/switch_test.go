package cutover

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"hsops/internal/fault"
	"hsops/internal/porter"
	"hsops/internal/proc"
)

func hasStep(steps []porter.Phase, name string) bool {
	for _, s := range steps {
		if s.Name == name {
			return true
		}
	}
	return false
}

// TestSwitch_UnderLoad switches a homeserver that hsload keeps writing to
// during the pre-copy: afterwards it serves from PostgreSQL every message
// it had, the old config is kept, and the operator's comments survive.
func TestSwitch_UnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the homeserver and drives it over HTTP")
	}
	d := newDeployment(t, false)
	d.load("alice", 100)

	// hsload writes while the pre-copy runs; the stop waits for it, and a
	// few more messages come after the last snapshot.
	loadErr := make(chan error, 1)
	var digest string
	opts := d.options()
	opts.Progress = func(ev Event) {
		switch {
		case ev.Type == "phase" && ev.Phase == PhasePreCopy:
			go func() {
				cmd := exec.Command(filepath.Join(binDir, "hsload"), "http", "-c", d.config, "--users", "3", "--rooms", "1", "--members", "3",
					"--messages", "150", "--reads", "5", "--searches", "2", "--concurrency", "3", "--prefix", "bob")
				out, err := cmd.CombinedOutput()
				if err != nil {
					err = errors.New(string(out))
				}
				loadErr <- err
			}()
		case ev.Type == "phase" && ev.Phase == PhaseStop:
			if err := <-loadErr; err != nil {
				t.Errorf("hsload during the pre-copy: %v", err)
			}
			d.load("carol", 20)
			digest = d.digest("alice", "bob", "carol")
		}
	}
	res, err := Run(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if got := d.database(); !got.IsPostgres() {
		t.Fatalf("the config names %s", got)
	}
	d.healthy()
	if got := d.digest("alice", "bob", "carol"); got != digest {
		t.Fatalf("messages and digest on PostgreSQL %s, on SQLite %s", got, digest)
	}
	if res.FinalRows == 0 || res.FinalTables["events"] == 0 {
		t.Errorf("the final port moved %d rows (events %d): the messages sent after the snapshot must move then", res.FinalRows, res.FinalTables["events"])
	}
	if len(res.PreCopy) == 0 || res.PreCopy[0].Rows == 0 {
		t.Errorf("no pre-copy: %+v", res.PreCopy)
	}
	if res.DowntimeMillis <= 0 {
		t.Errorf("downtime %d ms", res.DowntimeMillis)
	}
	// The final port followed what moved: no whole-file check (the
	// pre-copy checked the pages), what moved verified.
	if fp := res.FinalPort; fp == nil || fp.PageCheck != "as read" || fp.Verified != "moved rows" || hasStep(fp.Steps, "integrity check") {
		t.Errorf("final port %+v: want the pages checked as read and what moved verified", fp)
	}
	kept, err := os.ReadFile(res.Backup)
	if err != nil || !bytes.Equal(kept, d.original) {
		t.Fatalf("the old config is not kept as %s (%v)", res.Backup, err)
	}
	now, err := os.ReadFile(d.config)
	if err != nil {
		t.Fatal(err)
	}
	start := bytes.Index(d.original, []byte("database:\n"))
	end := bytes.Index(d.original, []byte("\n# logging"))
	if !bytes.HasPrefix(now, d.original[:start]) || !bytes.HasSuffix(now, d.original[end:]) {
		t.Fatalf("the config outside its database section changed:\n%s", now)
	}
	for _, c := range []string{comment, "# loopback only", "# logging (this comment belongs to log_config)"} {
		if !strings.Contains(string(now), c) {
			t.Errorf("comment %q is gone", c)
		}
	}
	if _, err := os.Stat(d.sqlite + ".switch-snapshot"); err == nil {
		t.Error("the pre-copy's snapshot was left behind")
	}

	// Run again: the config already names the complete port.
	res, err = Run(context.Background(), d.options())
	if err != nil {
		t.Fatal(err)
	}
	if !res.Resumed {
		t.Error("a second run did not see the switch done")
	}
}

// TestSwitch_FailuresRollBack fails the switch at each step after the
// stop: every time the old config is back and the homeserver serves from
// SQLite, with every message.
func TestSwitch_FailuresRollBack(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the homeserver")
	}
	for _, tc := range []struct {
		name  string
		phase string
		proxy bool
		fail  func(d *deployment)
		fix   func(d *deployment)
		// reason is in the roll-back's reason ("": not checked).
		reason string
	}{
		{name: "postgres unreachable at the final port", phase: PhaseFinalPort, proxy: true,
			fail: func(d *deployment) { d.proxy.cut() }},
		{name: "the final port fails", phase: PhaseStop,
			fail: func(d *deployment) {
				// New messages, which the final port cannot insert.
				d.load("carol", 10)
				d.exec("ALTER TABLE events ADD CONSTRAINT cutover_test CHECK (stream_ordering < 0) NOT VALID")
			},
			fix: func(d *deployment) { d.exec("ALTER TABLE events DROP CONSTRAINT cutover_test") }},
		{name: "the verification of what moved finds a difference", phase: PhaseStop,
			fail: func(d *deployment) {
				// New messages, which reach PostgreSQL altered.
				d.load("carol", 10)
				d.exec("CREATE FUNCTION cutover_test() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.json := NEW.json || ' '; RETURN NEW; END $$")
				d.exec("CREATE TRIGGER cutover_test BEFORE INSERT ON event_json FOR EACH ROW EXECUTE FUNCTION cutover_test()")
			},
			reason: "event_json (same row count"},
		{name: "the homeserver does not start on PostgreSQL", phase: PhaseStart,
			fail: func(d *deployment) { d.exec("UPDATE schema_compat_version SET compat_version = 999") },
			fix:  func(d *deployment) { d.exec("UPDATE schema_compat_version SET compat_version = 83") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newDeployment(t, tc.proxy)
			d.load("alice", 40)
			before := d.digest("alice")
			opts := d.options()
			opts.Progress = func(ev Event) {
				if ev.Type == "phase" && ev.Phase == tc.phase {
					tc.fail(d)
				}
			}
			res, err := Run(context.Background(), opts)
			var rb *RolledBackError
			if !errors.As(err, &rb) || fault.ClassOf(err) != fault.RolledBack {
				t.Fatalf("error %v (%T), want a roll-back", err, err)
			}
			if !res.RolledBack || strings.Contains(err.Error(), "\n") {
				t.Errorf("result %+v, error %q: want rolled back, a one-line reason", res, err)
			}
			if !strings.Contains(err.Error(), tc.reason) {
				t.Errorf("error %q: want it to say %q", err, tc.reason)
			}
			d.onSQLite()
			if got := d.digest("alice"); got != before {
				t.Fatalf("digest on SQLite after the roll-back %s, before %s", got, before)
			}
			if tc.fix == nil {
				return
			}
			// Fixed, the same command does the job.
			tc.fix(d)
			d.load("dave", 10)
			if tc.name == "the final port fails" {
				before = d.digest("alice", "carol", "dave")
			} else {
				before = d.digest("alice", "dave")
			}
			// Verified whole this time, as port_db --verify.
			again := d.options()
			again.Verify = VerifyWhole
			res, err = Run(context.Background(), again)
			if err != nil {
				t.Fatal(err)
			}
			if !d.database().IsPostgres() {
				t.Fatal("not switched")
			}
			if fp := res.FinalPort; fp == nil || fp.Verified != "every table" {
				t.Errorf("final port %+v: want every table verified", fp)
			}
			var after string
			if tc.name == "the final port fails" {
				after = d.digest("alice", "carol", "dave")
			} else {
				after = d.digest("alice", "dave")
			}
			if after != before {
				t.Fatalf("digest on PostgreSQL %s, on SQLite %s", after, before)
			}
		})
	}
}

// TestSwitch_DryRunChangesNothing checks and plans, and changes nothing.
func TestSwitch_DryRunChangesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the homeserver")
	}
	d := newDeployment(t, false)
	d.load("alice", 10)
	opts := d.options()
	opts.DryRun = true
	res, err := Run(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Plan) == 0 || len(res.Checks) < 3 || !strings.Contains(res.NewSection, "psycopg2") {
		t.Errorf("dry run: %+v", res)
	}
	d.onSQLite()
	if d.portComplete() {
		t.Error("the dry run ported")
	}
	entries, _ := os.ReadDir(filepath.Dir(d.config))
	for _, e := range entries {
		if strings.Contains(e.Name(), "sqlite-") || strings.Contains(e.Name(), "snapshot") {
			t.Errorf("the dry run left %s", e.Name())
		}
	}
}

// TestSwitch_WorkersThroughPython switches a main process and a worker
// (-a) started as synctl --python starts real Synapse: PYTHON -m <app> -c
// CONFIG [-c WORKERCONFIG] --daemonize (a launcher script stands in for
// Python and execs the engine).
func TestSwitch_WorkersThroughPython(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the homeserver")
	}
	d := newDeployment(t, false)
	d.load("alice", 20)
	before := d.digest("alice")
	python := filepath.Join(d.dir, "fake-python")
	script := "#!/bin/sh\necho \"$*\" >> " + filepath.Join(d.dir, "launcher.log") + "\n[ \"$1\" = \"-m\" ] || exit 9\nshift 2\nexec " + filepath.Join(binDir, "homeserver") + " \"$@\"\n"
	if err := os.WriteFile(python, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	workers := filepath.Join(d.dir, "workers")
	writeFile(t, filepath.Join(workers, "main.yaml"), "worker_app: synapse.app.homeserver\n")
	wport := freePort(t)
	writeFile(t, filepath.Join(workers, "worker1.yaml"), "worker_app: synapse.app.generic_worker\nworker_name: worker1\nworker_pid_file: "+
		filepath.Join(d.dir, "worker1.pid")+"\nworker_log_config: "+filepath.Join(d.dir, "hs", "example.org.log.config")+"\nworker_listeners:\n  - port: "+strconv.Itoa(wport)+"\n    type: http\n    bind_addresses: ['127.0.0.1']\n    resources:\n      - names: [client]\n")
	opts := d.options()
	opts.AllDir = workers
	opts.Launcher = proc.Launcher{Python: python}
	opts.Verify = VerifyCounts
	pl, err := proc.Discover(proc.Selection{Config: d.config, AllDir: workers})
	if err != nil {
		t.Fatal(err)
	}
	sup := d.supervisor()
	sup.Launcher = opts.Launcher
	if err := sup.Start(context.Background(), pl); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sup.Kill = true
		_ = sup.Stop(context.Background(), pl)
	})
	res, err := Run(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Processes) != 2 || !d.database().IsPostgres() {
		t.Fatalf("processes %v, database %s", res.Processes, d.database())
	}
	if err := proc.WaitHealthy(context.Background(), pl.Workers[0].HealthURL, 10*time.Second); err != nil {
		t.Fatalf("the worker is not healthy: %v", err)
	}
	if got := d.digest("alice"); got != before {
		t.Fatalf("digest on PostgreSQL %s, on SQLite %s", got, before)
	}
	log, _ := os.ReadFile(filepath.Join(d.dir, "launcher.log"))
	want := "-m synapse.app.generic_worker -c " + d.config + " -c " + filepath.Join(workers, "worker1.yaml") + " --daemonize"
	if strings.Count(string(log), want) != 2 || strings.Count(string(log), "-m synapse.app.homeserver -c "+d.config+" --daemonize") != 1 {
		t.Errorf("launches:\n%s\nwant the worker started twice (before and by the switch) as %q, the main process once (by the switch)", log, want)
	}
}
