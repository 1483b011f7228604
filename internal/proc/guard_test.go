package proc

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"hsops/internal/config"
	"hsops/internal/fault"
)

// deployment is a directory with a config, its pid file and a SQLite file.
type deployment struct {
	dir, config, pidFile, db string
}

func newDeployment(t *testing.T) deployment {
	t.Helper()
	dir := t.TempDir()
	d := deployment{dir: dir, config: filepath.Join(dir, "hs.yaml"), pidFile: filepath.Join(dir, "homeserver.pid"), db: filepath.Join(dir, "homeserver.db")}
	write(t, d.config, "server_name: example.org\npid_file: "+d.pidFile+"\ndatabase:\n  name: sqlite3\n  args:\n    database: "+d.db+"\n")
	write(t, d.db, "")
	return d
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o755); err != nil {
		t.Fatal(err)
	}
}

func (d deployment) target(t *testing.T) Target {
	t.Helper()
	cfg, err := config.Load(d.config)
	if err != nil {
		t.Fatal(err)
	}
	return TargetOf(cfg)
}

// start runs a program in its own process group (killed at the end of the
// test, children included).
func start(t *testing.T, dir, name string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	})
	// The kernel sets the command line a moment after exec returns.
	for i := 0; Cmdline(cmd.Process.Pid) == ""; i++ {
		if i == 500 {
			t.Fatalf("pid %d never showed its command line", cmd.Process.Pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return cmd
}

// fakeHomeserver starts a program that looks like a homeserver started
// with the configs given, and writes its pid into the pid file.
func fakeHomeserver(t *testing.T, d deployment, configs ...string) int {
	t.Helper()
	bin := filepath.Join(d.dir, "homeserver")
	write(t, bin, "#!/bin/sh\nsleep 60\n")
	var args []string
	for _, c := range configs {
		args = append(args, "-c", c)
	}
	cmd := start(t, d.dir, bin, args...)
	writePid(t, d.pidFile, cmd.Process.Pid)
	return cmd.Process.Pid
}

func writePid(t *testing.T, pidFile string, pid int) {
	t.Helper()
	if err := WritePidFile(pidFile, pid); err != nil {
		t.Fatal(err)
	}
}

func TestHomeserverRunning_TheHomeserverOfThePidFile(t *testing.T) {
	d := newDeployment(t)
	pid := fakeHomeserver(t, d, "hs.yaml")
	v := HomeserverRunning(d.target(t))
	if v.State != Running || !v.Running() || v.Pid != pid {
		t.Fatalf("got state %d, pid %d, holders %v; want running pid %d", v.State, v.Pid, v.Holders, pid)
	}
	h := v.Holders[0]
	if h.Pid != pid || h.PidFile != d.pidFile || !strings.Contains(h.Cmdline, "homeserver -c hs.yaml") || h.Since.IsZero() {
		t.Fatalf("got holder %+v", h)
	}
	err := v.Refusal("then this")
	if fault.ClassOf(err) != fault.InUse {
		t.Fatalf("got class %v, want in-use", fault.ClassOf(err))
	}
	if want := "the homeserver is running (pid " + strconv.Itoa(pid) + ": "; !strings.Contains(err.Error(), want) {
		t.Errorf("got %q, want it to contain %q", err, want)
	}
	if got, want := fault.HintOf(err), "stop it first: synctl stop "+d.config+"\nthen this"; got != want {
		t.Errorf("got hint %q, want %q", got, want)
	}
}

func TestHomeserverRunning_ConfigDirectoryMatchesItsFiles(t *testing.T) {
	d := newDeployment(t)
	conf := filepath.Join(d.dir, "conf.d")
	if err := os.Mkdir(conf, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(d.config, filepath.Join(conf, "hs.yaml")); err != nil {
		t.Fatal(err)
	}
	fakeHomeserver(t, d, "conf.d")
	d.config = filepath.Join(conf, "hs.yaml")
	if v := HomeserverRunning(d.target(t)); v.State != Running {
		t.Fatalf("got state %d, want running: the process's directory holds the config", v.State)
	}
}

func TestHomeserverRunning_RecycledPidIsNotRunning(t *testing.T) {
	d := newDeployment(t)
	sleeper := start(t, d.dir, "sleep", "60")
	writePid(t, d.pidFile, sleeper.Process.Pid)
	v := HomeserverRunning(d.target(t))
	if v.State != Recycled || v.Running() || !strings.Contains(v.Cmdline, "sleep 60") {
		t.Fatalf("got state %d, holders %v, cmdline %q; want recycled, not running", v.State, v.Holders, v.Cmdline)
	}
	if err := v.Refusal(""); err != nil {
		t.Fatalf("got %v, want no refusal", err)
	}
}

func TestHomeserverRunning_StartedAfterThePidFileIsRecycled(t *testing.T) {
	d := newDeployment(t)
	// A homeserver-looking process whose configs cannot be read.
	fakeHomeserver(t, d)
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(d.pidFile, old, old); err != nil {
		t.Fatal(err)
	}
	if v := HomeserverRunning(d.target(t)); v.State != Recycled || v.Running() {
		t.Fatalf("got state %d, want recycled: the process started after its pid file was written", v.State)
	}
}

// TestHomeserverRunning_ItsConfigsProveItDespiteAnOldPidFile: a process
// started with the target's configs is its homeserver even when its pid
// file looks older than it (the wall clock stepped forward since).
func TestHomeserverRunning_ItsConfigsProveItDespiteAnOldPidFile(t *testing.T) {
	d := newDeployment(t)
	pid := fakeHomeserver(t, d, "hs.yaml")
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(d.pidFile, old, old); err != nil {
		t.Fatal(err)
	}
	if v := HomeserverRunning(d.target(t)); v.State != Running || v.Pid != pid {
		t.Fatalf("got state %d, pid %d; want running pid %d", v.State, v.Pid, pid)
	}
}

func TestHomeserverRunning_ZombieAndGoneAreStale(t *testing.T) {
	d := newDeployment(t)
	cmd := exec.Command("sh", "-c", "exit 0")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	writePid(t, d.pidFile, pid)
	// Not waited for, it stays a zombie.
	for i := 0; ; i++ {
		if state, _ := procState(pid); state == "Z" {
			break
		}
		if i == 500 {
			t.Fatal("the child never became a zombie")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if v := HomeserverRunning(d.target(t)); v.State != Stale || v.Running() {
		t.Fatalf("zombie: got state %d, want stale", v.State)
	}
	_ = cmd.Wait()
	if v := HomeserverRunning(d.target(t)); v.State != Stale || v.Running() {
		t.Fatalf("gone: got state %d, want stale", v.State)
	}
}

func TestHomeserverRunning_PidFileOfAnotherConfig(t *testing.T) {
	d := newDeployment(t)
	other := filepath.Join(d.dir, "other.yaml")
	write(t, other, "server_name: other.org\npid_file: "+d.pidFile+"\n")
	pid := fakeHomeserver(t, d, "other.yaml")
	v := HomeserverRunning(d.target(t))
	if v.State != Other || v.Running() {
		t.Fatalf("got state %d, holders %v; want another homeserver's process, not running", v.State, v.Holders)
	}
	err := v.Conflict()
	var shared *SharedPidFileError
	if !errors.As(err, &shared) || shared.Pid != pid || fault.ClassOf(err) != fault.Config {
		t.Fatalf("got %v, want a shared pid file naming pid %d, class config", err, pid)
	}
	if !strings.Contains(err.Error(), "another homeserver process") || !strings.Contains(err.Error(), "-c other.yaml") {
		t.Errorf("got %q", err)
	}
}

func TestHomeserverRunning_SQLiteFileHeldOpen(t *testing.T) {
	d := newDeployment(t)
	holder := start(t, d.dir, "sh", "-c", `exec 3<"$0"; exec sleep 60`, d.db)
	pid := holder.Process.Pid
	var v Verdict
	for i := 0; i < 500; i++ {
		if v = HomeserverRunning(d.target(t)); v.Running() && strings.HasPrefix(v.Holders[0].Cmdline, "sleep") {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if v.State != NoPidFile || len(v.Holders) != 1 || v.Holders[0].Pid != pid || v.Holders[0].File != d.db {
		t.Fatalf("got state %d, holders %+v; want pid %d holding %s", v.State, v.Holders, pid, d.db)
	}
	err := v.Refusal("")
	if want := `the SQLite file "` + d.db + `" is open in another process (pid ` + strconv.Itoa(pid) + ": sleep 60 (since "; !strings.Contains(err.Error(), want) {
		t.Errorf("got %q, want it to contain %q", err, want)
	}
	if want := "stop the process holding it first (pid " + strconv.Itoa(pid) + ": sleep 60)"; !strings.HasPrefix(fault.HintOf(err), want) {
		t.Errorf("got hint %q, want it to start with %q", fault.HintOf(err), want)
	}
	// The homeserver of the pid file holding the file too is named once.
	writePid(t, d.pidFile, pid)
	t2 := d.target(t)
	t2.Configs = nil
	if v := HomeserverRunning(t2); len(v.Holders) != 1 {
		t.Fatalf("got holders %+v, want the one process once", v.Holders)
	}
}

func TestHomeserverRunning_PidFiles(t *testing.T) {
	d := newDeployment(t)
	if v := HomeserverRunning(d.target(t)); v.State != NoPidFile || v.Running() {
		t.Fatalf("no pid file: got state %d", v.State)
	}
	write(t, d.pidFile, "not a pid\n")
	if v := HomeserverRunning(d.target(t)); v.State != BadPidFile || v.PidErr == nil || v.Running() {
		t.Fatalf("bad pid file: got state %d, %v", v.State, v.PidErr)
	}
	writePid(t, d.pidFile, os.Getpid())
	if v := HomeserverRunning(d.target(t)); v.State != Stale {
		t.Fatalf("own pid: got state %d, want stale", v.State)
	}
}

func TestTargetOf_Worker(t *testing.T) {
	d := newDeployment(t)
	w := filepath.Join(d.dir, "w1.yaml")
	write(t, w, "worker_app: synapse.app.generic_worker\nworker_name: w1\nworker_pid_file: w1.pid\n")
	cfg, err := config.Load(d.config, w)
	if err != nil {
		t.Fatal(err)
	}
	got := TargetOf(cfg)
	if wd, _ := os.Getwd(); got.PidFile != filepath.Join(wd, "w1.pid") || len(got.SQLite) != 1 || got.SQLite[0] != d.db || len(got.Configs) != 2 {
		t.Fatalf("got %+v", got)
	}
}

func TestDaemonErrorRoundTrip(t *testing.T) {
	in := fault.Errorf(fault.Listen, "free the port\nor change it", "cannot listen on %s:\n%s", "127.0.0.1:1", "in use")
	out := decodeError(encodeError(in))
	if fault.ClassOf(out) != fault.Listen || out.Error() != "cannot listen on 127.0.0.1:1: in use" || fault.HintOf(out) != "free the port\nor change it" {
		t.Fatalf("got class %v, %q, hint %q", fault.ClassOf(out), out, fault.HintOf(out))
	}
}

// TestInUseHint_NamesWhatHoldsIt: a tool holding the file is waited for,
// not stopped like the homeserver.
func TestInUseHint_NamesWhatHoldsIt(t *testing.T) {
	cases := []struct {
		h    Holder
		want string
	}{
		{Holder{Pid: 7, Cmdline: "/usr/bin/port_db --sqlite-database hs.db --postgres-config pg.yaml", File: "hs.db"}, "another tool at work: wait for it to finish (pid 7: /usr/bin/port_db"},
		{Holder{Pid: 8, Cmdline: "python3 /usr/bin/synapse_port_db --curses", File: "hs.db"}, "wait for it to finish (pid 8"},
		{Holder{Pid: 9, Cmdline: "/usr/bin/homeserver -c hs.yaml", File: "hs.db"}, "stop the process holding it first (pid 9: /usr/bin/homeserver -c hs.yaml)"},
		{Holder{Pid: 10, Cmdline: "sqlite3 hs.db", File: "hs.db"}, "stop the process holding it first (pid 10: sqlite3 hs.db)"},
	}
	for _, c := range cases {
		e := &InUseError{Holders: []Holder{c.h}}
		if got := e.Hint(); !strings.Contains(got, c.want) {
			t.Errorf("%s: hint %q, want it to contain %q", c.h.Cmdline, got, c.want)
		}
	}
}

// TestIsTool reads a process's arguments as it was started: a Python
// interpreter's module (-m, grouped options included) or script, a path
// with a space in it; Synapse's homeserver run as a module is not a tool.
func TestIsTool(t *testing.T) {
	cases := []struct {
		args []string
		want bool
	}{
		{[]string{"/usr/bin/port_db", "--sqlite-database", "hs.db"}, true},
		{[]string{"/srv/my tools/update_database", "-c", "hs.yaml"}, true},
		{[]string{"python3", "/usr/bin/synapse_port_db", "--curses"}, true},
		{[]string{"python3", "-m", "synapse._scripts.synapse_port_db", "--curses"}, true},
		{[]string{"/opt/venvs/matrix-synapse/bin/python3.11", "-um", "synapse._scripts.update_synapse_database", "--database-config", "db.yaml"}, true},
		{[]string{"python3", "-msynapse._scripts.update_synapse_database"}, true},
		{[]string{"python3", "-X", "dev", "-W", "ignore", "-m", "synapse._scripts.synapse_port_db"}, true},
		{[]string{"python3", "-W", "ignore", "/usr/local/bin/update_synapse_database.py"}, true},
		{[]string{"python3", "-m", "synapse.app.homeserver", "-c", "hs.yaml"}, false},
		{[]string{"python", "-c", "import synapse._scripts.synapse_port_db"}, false},
		{[]string{"python3", "-m"}, false},
		{[]string{"python3"}, false},
		{[]string{"sqlite3", "hs.db"}, false},
		{nil, false},
	}
	for _, c := range cases {
		if got := isTool(c.args); got != c.want {
			t.Errorf("isTool(%q) = %v, want %v", c.args, got, c.want)
		}
	}
}

// TestHomeserverRunning_PythonModuleHoldsTheFile: a Synapse script run as
// a module (python3 -m synapse._scripts.update_synapse_database, as a
// virtualenv runs it), holding a SQLite file in a directory with a space
// in its name, is a tool to wait for; Synapse's homeserver run the same
// way is a process to stop.
func TestHomeserverRunning_PythonModuleHoldsTheFile(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("no python3 on PATH")
	}
	pkg := t.TempDir()
	for _, f := range []string{"synapse/__init__.py", "synapse/_scripts/__init__.py", "synapse/app/__init__.py"} {
		if err := os.MkdirAll(filepath.Join(pkg, filepath.Dir(f)), 0o755); err != nil {
			t.Fatal(err)
		}
		write(t, filepath.Join(pkg, f), "")
	}
	// Holds the file named after --database open until killed.
	holder := "import sys, time\nf = open(sys.argv[sys.argv.index('--database') + 1])\nprint('holding', flush=True)\ntime.sleep(60)\n"
	write(t, filepath.Join(pkg, "synapse/_scripts/update_synapse_database.py"), holder)
	write(t, filepath.Join(pkg, "synapse/app/homeserver.py"), holder)
	for _, c := range []struct {
		module, want string
	}{
		{"synapse._scripts.update_synapse_database", "another tool at work: wait for it to finish (pid "},
		{"synapse.app.homeserver", "stop the process holding it first (pid "},
	} {
		t.Run(c.module, func(t *testing.T) {
			d := newDeployment(t)
			spaced := filepath.Join(d.dir, "a dir")
			if err := os.Mkdir(spaced, 0o755); err != nil {
				t.Fatal(err)
			}
			d.db = filepath.Join(spaced, "homeserver.db")
			write(t, d.config, "server_name: example.org\npid_file: "+d.pidFile+"\ndatabase:\n  name: sqlite3\n  args:\n    database: "+d.db+"\n")
			write(t, d.db, "")
			cmd := exec.Command(python, "-m", c.module, "--database", d.db)
			cmd.Env = append(os.Environ(), "PYTHONPATH="+pkg, "PYTHONDONTWRITEBYTECODE=1")
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
			})
			if _, err := out.Read(make([]byte, 8)); err != nil {
				t.Fatalf("the holder did not start: %v", err)
			}
			v := HomeserverRunning(d.target(t))
			if len(v.Holders) != 1 || v.Holders[0].Pid != cmd.Process.Pid {
				t.Fatalf("got holders %+v, want pid %d", v.Holders, cmd.Process.Pid)
			}
			if h := v.Holders[0]; len(h.Args) != 5 || h.Args[4] != d.db {
				t.Errorf("got args %q, want the path with its space as one argument", h.Args)
			}
			hint := fault.HintOf(v.Refusal(""))
			// (The interpreter may be another path than the one started: a
			// pyenv shim execs the real one.)
			for _, want := range []string{c.want + strconv.Itoa(cmd.Process.Pid) + ": ", "python3 -m " + c.module + " --database " + d.db + ")"} {
				if !strings.Contains(hint, want) {
					t.Errorf("got hint %q, want it to contain %q", hint, want)
				}
			}
		})
	}
}
