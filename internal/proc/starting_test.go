package proc

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// starting starts a homeserver-looking process with the deployment's
// config and no pid file: one that has not written it yet. script is its
// body.
func starting(t *testing.T, d deployment, script string) int {
	t.Helper()
	bin := filepath.Join(d.dir, "homeserver")
	write(t, bin, "#!/bin/sh\n"+script+"\n")
	return start(t, d.dir, bin, "-c", "hs.yaml", "--daemonize").Process.Pid
}

func TestHomeserverRunning_StartingBeforeItsPidFile(t *testing.T) {
	d := newDeployment(t)
	pid := starting(t, d, "sleep 60")
	// A tool given the same config is not the homeserver, even run by
	// Python (which looks like Synapse).
	// (The interpreter itself: a version manager's shim would show its own
	// command line for a moment.)
	if out, err := exec.Command("python3", "-c", "import sys; print(sys.executable)").Output(); err == nil {
		python := strings.TrimSpace(string(out))
		tool := filepath.Join(d.dir, "port_db.py")
		write(t, tool, "import time\ntime.sleep(60)\n")
		start(t, d.dir, python, tool, "-c", "hs.yaml")
	}

	v := HomeserverRunning(d.target(t))
	if v.State != Starting || v.Pid != pid || !v.Running() {
		t.Fatalf("got state %d, pid %d, holders %v; want starting pid %d", v.State, v.Pid, v.Holders, pid)
	}
	if len(v.Holders) != 1 || !v.Holders[0].ByConfigs || v.Holders[0].Pid != pid {
		t.Fatalf("holders %+v, want the homeserver alone", v.Holders)
	}
	if err := v.Refusal("then"); err == nil {
		t.Fatal("a starting homeserver does not refuse a change to its database")
	}
	// Another config's process is not it.
	other := filepath.Join(d.dir, "other.yaml")
	write(t, other, "server_name: other.org\n")
	if v := HomeserverRunning(Target{Configs: []string{other}, PidFile: filepath.Join(d.dir, "other.pid")}); v.Running() {
		t.Fatalf("another config's process counted: %+v", v.Holders)
	}
}

// TestStart_WaitsForAStartingProcess: a start killed half-way left the
// homeserver starting, its pid file not yet written; the next start waits
// for its /health instead of launching a second one, which would only
// find the database locked.
func TestStart_WaitsForAStartingProcess(t *testing.T) {
	d := newDeployment(t)
	pl, err := Discover(Selection{Config: d.config})
	if err != nil {
		t.Fatal(err)
	}
	pid := starting(t, d, "sleep 60")
	since := time.Now()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if time.Since(since) < 300*time.Millisecond {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("OK"))
	}))
	defer srv.Close()
	pl.Main.HealthURL = srv.URL + "/health"
	launched := filepath.Join(d.dir, "launched")
	second := filepath.Join(d.dir, "second")
	write(t, second, "#!/bin/sh\ntouch "+launched+"\nexit 1\n")

	var kinds []EventKind
	sup := &Supervisor{Launcher: Launcher{Homeserver: second}, Timeout: 10 * time.Second, Progress: func(e Event) { kinds = append(kinds, e.Kind) }}
	if err := sup.Start(context.Background(), pl); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(launched); err == nil {
		t.Fatal("a second homeserver was launched beside the starting one")
	}
	if len(kinds) != 2 || kinds[0] != AlreadyStarting || kinds[1] != Started {
		t.Fatalf("events %v, want AlreadyStarting then Started", kinds)
	}
	if !Alive(pid) {
		t.Fatal("the starting process was stopped")
	}
}

// TestStart_LaunchesAgainWhenTheStartingOneDies: a process that exits
// while starting is launched again.
func TestStart_LaunchesAgainWhenTheStartingOneDies(t *testing.T) {
	d := newDeployment(t)
	pl, err := Discover(Selection{Config: d.config})
	if err != nil {
		t.Fatal(err)
	}
	starting(t, d, "sleep 0.3; exit 1")
	launched := filepath.Join(d.dir, "launched")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := os.Stat(launched); err != nil {
			http.Error(w, "down", http.StatusServiceUnavailable) // only the new launch answers
			return
		}
		_, _ = w.Write([]byte("OK"))
	}))
	defer srv.Close()
	pl.Main.HealthURL = srv.URL + "/health"
	second := filepath.Join(d.dir, "second")
	write(t, second, "#!/bin/sh\ntouch "+launched+"\n")
	sup := &Supervisor{Launcher: Launcher{Homeserver: second}, Timeout: 10 * time.Second}
	if err := sup.Start(context.Background(), pl); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(launched); err != nil {
		t.Fatal("the homeserver was not launched again")
	}
}

// TestStop_StopsAStartingProcess: synctl stop during a start stops the
// process that has no pid file yet.
func TestStop_StopsAStartingProcess(t *testing.T) {
	d := newDeployment(t)
	pl, err := Discover(Selection{Config: d.config})
	if err != nil {
		t.Fatal(err)
	}
	pid := starting(t, d, "trap 'exit 0' TERM\nwhile :; do sleep 0.05; done")
	ticks, _ := StartTicks(pid)
	var kinds []EventKind
	sup := &Supervisor{Timeout: 10 * time.Second, Progress: func(e Event) { kinds = append(kinds, e.Kind) }}
	if err := sup.Stop(context.Background(), pl); err != nil {
		t.Fatal(err)
	}
	if !Gone(pid, ticks) {
		t.Fatal("the starting process still runs")
	}
	if len(kinds) == 0 || kinds[0] != Signalled {
		t.Fatalf("events %v, want it signalled", kinds)
	}
}

func TestServing(t *testing.T) {
	for _, c := range []struct {
		args []string
		want bool
	}{
		{[]string{"/usr/bin/homeserver", "-c", "hs.yaml", "--daemonize"}, true},
		{[]string{"/usr/bin/homeserver", "-c", "hs.yaml", "-c", "w.yaml"}, true},
		{[]string{"/usr/bin/python3", "-m", "synapse.app.homeserver", "-c", "hs.yaml", "--daemonize"}, true},
		{[]string{"/venv/bin/python", "-m", "synapse.app.generic_worker", "-c", "hs.yaml", "-c", "w.yaml"}, true},
		{[]string{"/usr/bin/python3", "-m", "synapse._scripts.synapse_port_db", "--sqlite-database", "homeserver.db"}, false},
		{[]string{"/usr/bin/python3", "/usr/bin/register_new_matrix_user", "-c", "homeserver.yaml"}, false},
		{[]string{"/usr/bin/python3", "/usr/bin/synctl", "start", "homeserver.yaml"}, false},
		{[]string{"/usr/bin/homeserver", "register-user", "-c", "hs.yaml", "--user", "alice"}, false},
		{[]string{"/usr/bin/homeserver", "-c", "hs.yaml", "--generate-config", "--server-name", "x"}, false},
		{[]string{"/usr/bin/update_database", "-c", "homeserver.yaml"}, false},
		{[]string{"/usr/bin/synctl", "start", "homeserver.yaml"}, false},
		{[]string{"/usr/bin/vim", "-c", "hs.yaml"}, false},
	} {
		if got := serving(c.args); got != c.want {
			t.Errorf("serving(%q) = %v, want %v", c.args, got, c.want)
		}
	}
}
