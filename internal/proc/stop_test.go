package proc

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// slowExit starts a homeserver-looking process that holds the SQLite file
// open and, on SIGTERM, removes its pid file at once but exits only a
// moment later (as a process may while it closes its database).
func slowExit(t *testing.T, d deployment) int {
	t.Helper()
	bin := filepath.Join(d.dir, "homeserver")
	write(t, bin, "#!/bin/sh\nexec 3<\""+d.db+"\"\ntrap 'rm -f \""+d.pidFile+"\"; sleep 0.5 3<&-; exit 0' TERM\nwhile :; do sleep 0.05 3<&-; done\n")
	cmd := start(t, d.dir, bin, "-c", "hs.yaml")
	writePid(t, d.pidFile, cmd.Process.Pid)
	// The shell has the file open once it runs its loop.
	for i := 0; len(openers(d.db)) == 0; i++ {
		if i == 500 {
			t.Fatal("the process never opened the database")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return cmd.Process.Pid
}

// TestStop_WaitsForTheProcessNotItsPidFile: the pid file goes before the
// process; Stop returns only once the process has exited and let go of
// the database.
func TestStop_WaitsForTheProcessNotItsPidFile(t *testing.T) {
	d := newDeployment(t)
	pid := slowExit(t, d)
	ticks, _ := StartTicks(pid)
	pl, err := Discover(Selection{Config: d.config})
	if err != nil {
		t.Fatal(err)
	}
	var kinds []EventKind
	sup := &Supervisor{Timeout: 10 * time.Second, Progress: func(e Event) { kinds = append(kinds, e.Kind) }}
	if err := sup.Stop(context.Background(), pl); err != nil {
		t.Fatal(err)
	}
	if !Gone(pid, ticks) {
		t.Errorf("Stop returned while pid %d still runs", pid)
	}
	if h := openers(d.db); len(h) > 0 {
		t.Errorf("Stop returned while the database is held: %v", h)
	}
	if _, err := os.Stat(d.pidFile); err == nil {
		t.Error("the pid file is still there")
	}
	if n := len(kinds); n == 0 || kinds[n-1] != AllExited {
		t.Errorf("events %v, want the last to be AllExited", kinds)
	}
}

// TestStop_ItsOwnProcessDespiteAnOldPidFile: a process the supervisor
// started is stopped even when its pid file looks older than it (a wall
// clock stepped forward) and its configs cannot prove it.
func TestStop_ItsOwnProcessDespiteAnOldPidFile(t *testing.T) {
	d := newDeployment(t)
	pl, err := Discover(Selection{Config: d.config})
	if err != nil {
		t.Fatal(err)
	}
	// Started with no configs on its command line: only the supervisor's
	// memory of its start can prove it.
	bin := filepath.Join(d.dir, "homeserver")
	write(t, bin, "#!/bin/sh\nexec 3<\""+d.db+"\"\ntrap 'exit 0' TERM\nwhile :; do sleep 0.05 3<&-; done\n")
	own := start(t, d.dir, bin)
	writePid(t, d.pidFile, own.Process.Pid)
	sup := &Supervisor{Timeout: 10 * time.Second}
	sup.remember(*pl.Main)
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(d.pidFile, old, old); err != nil {
		t.Fatal(err)
	}
	if v := HomeserverRunning(pl.Main.Target()); v.State != Recycled {
		t.Fatalf("state %d: the guard alone should take it for a recycled pid", v.State)
	}
	if err := sup.Stop(context.Background(), pl); err != nil {
		t.Fatal(err)
	}
	ticks, _ := StartTicks(own.Process.Pid)
	if !Gone(own.Process.Pid, ticks) {
		t.Fatal("the supervisor's own process was not stopped")
	}
}

// TestGone: a running process is not gone, an ended one (a zombie not
// yet reaped included) is, and so is a pid now naming a process started
// at another time.
func TestGone(t *testing.T) {
	d := newDeployment(t)
	cmd := start(t, d.dir, "sleep", "60")
	pid := cmd.Process.Pid
	ticks, ok := StartTicks(pid)
	if !ok {
		t.Skip("no /proc")
	}
	if Gone(pid, ticks) {
		t.Fatal("a running process is gone")
	}
	if !Gone(pid, ticks+1) {
		t.Error("a pid started at another time is not gone")
	}
	_ = cmd.Process.Kill()
	for i := 0; ; i++ {
		if state, _ := procState(pid); state == "Z" {
			break
		}
		if i == 500 {
			t.Fatal("the process never became a zombie")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !Gone(pid, ticks) {
		t.Error("a zombie with no thread left is not gone")
	}
	_ = cmd.Wait()
	if !Gone(pid, ticks) {
		t.Error("a reaped process is not gone")
	}
}
