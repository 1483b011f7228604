package proc

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"hsops/internal/config"
	"hsops/internal/fault"
)

// Target is what HomeserverRunning looks at: a homeserver process (its pid
// file and the configs it is started with) and the SQLite files of its
// database.
type Target struct {
	// Configs are the config paths the process is started with (-c ...),
	// files or directories; a live process started with other configs
	// (compared file by file, directories expanded) is another
	// homeserver's (State Other). Empty: not checked.
	Configs []string
	// Synctl is how synctl names the process in a hint ("hs.yaml",
	// "-w worker.yaml hs.yaml"); "" names the one config, else "<config>".
	Synctl string
	// PidFile is the process's pid file ("" when it has none).
	PidFile string
	// SQLite are the SQLite files of the database: any other process that
	// holds one open uses the database.
	SQLite []string
}

// TargetOf is the target of a loaded config: the files it was loaded from,
// its pid_file (worker_pid_file for a worker) and the SQLite files of its
// databases.
func TargetOf(cfg *config.Config) Target {
	t := Target{Configs: cfg.Files, PidFile: cfg.PidFile}
	if cfg.IsWorker() {
		t.PidFile = cfg.WorkerPidFile
	}
	if t.PidFile != "" {
		t.PidFile = absPath(t.PidFile)
	}
	for _, d := range cfg.Databases {
		if d.IsSQLite() && d.SQLitePath() != "" {
			t.SQLite = append(t.SQLite, d.SQLitePath())
		}
	}
	return t
}

// State is what a pid file's process turned out to be.
type State int

// The states of a pid file.
const (
	// NoPidFile: there is no pid file (or the target names none).
	NoPidFile State = iota
	// BadPidFile: the pid file cannot be read or holds no pid.
	BadPidFile
	// Stale: no such process, or a zombie.
	Stale
	// Recycled: the pid now belongs to another program, or to a process
	// started after the pid file was written.
	Recycled
	// Other: a homeserver process, but one started with other configs (two
	// processes sharing a pid file, or a pid file copied from another): not
	// the process the target is about.
	Other
	// Running: the homeserver process the pid file is about.
	Running
	// Starting: no pid file names it, but a homeserver process started
	// with the target's configs runs (Pid, the newest of them): one
	// starting, which writes its pid file once ready (the engine's daemon,
	// and Synapse, which prepares its database before it daemonizes), or
	// one whose pid file was removed.
	Starting
)

// Holder is a process that uses the database.
type Holder struct {
	Pid     int
	Cmdline string
	// Args are the arguments Cmdline joins, as the process was started
	// (nil when unknown: then Cmdline split at spaces stands in).
	Args []string
	// Since is when the process started (zero when unknown).
	Since time.Time
	// PidFile is the pid file naming it ("" for a program found holding a
	// SQLite file open).
	PidFile string
	// File is the SQLite file it holds open ("" for the process of the pid
	// file).
	File string
	// ByConfigs: found by the configs of its command line, no pid file
	// naming it (State Starting).
	ByConfigs bool
}

// String describes the holder: "pid N: COMMAND (since TIME)".
func (h Holder) String() string {
	s := fmt.Sprintf("pid %d", h.Pid)
	if h.Cmdline != "" {
		s += ": " + h.Cmdline
	}
	if !h.Since.IsZero() {
		s += " (since " + h.Since.Format("2006-01-02 15:04:05") + ")"
	}
	return s
}

// Verdict is the answer of HomeserverRunning.
type Verdict struct {
	Target Target
	// State is what the pid file's process is.
	State State
	// Pid is the pid the pid file names (0 without one).
	Pid int
	// Cmdline is that process's command line.
	Cmdline string
	// PidErr says why the pid file is BadPidFile.
	PidErr error
	// Holders use the database: the process of the pid file when it is
	// Running, then the other processes holding a SQLite file open.
	Holders []Holder
}

// startingPids are the processes of a Starting verdict: every process
// started with the target's configs (a daemon and the parent waiting for
// it).
func (v Verdict) startingPids() []int {
	var pids []int
	for _, h := range v.Holders {
		if h.ByConfigs {
			pids = append(pids, h.Pid)
		}
	}
	return pids
}

// Running reports whether anything uses the database.
func (v Verdict) Running() bool { return len(v.Holders) > 0 }

// HomeserverRunning answers "is the homeserver running on this database?":
// the pid file's process when it is alive, not a zombie, a homeserver,
// started before the pid file was written and with the target's configs;
// else the homeserver processes started with the target's configs that no
// pid file names yet (Starting); and, for a SQLite database, every other
// process that holds the file open. A recycled pid naming an unrelated
// program is not running.
func HomeserverRunning(t Target) Verdict {
	v := Verdict{Target: t}
	if t.PidFile != "" {
		v.fromPidFile()
	}
	if v.State != Running && v.State != Other && len(t.Configs) > 0 {
		if hs := startedWith(t.Configs); len(hs) > 0 {
			last := hs[len(hs)-1]
			v.State, v.Pid, v.Cmdline, v.PidErr = Starting, last.Pid, last.Cmdline, nil
			v.Holders = append(hs, v.Holders...)
		}
	}
	seen := map[int]bool{}
	for _, h := range v.Holders {
		seen[h.Pid] = true
	}
	for _, f := range t.SQLite {
		for _, h := range openers(f) {
			if !seen[h.Pid] {
				seen[h.Pid] = true
				v.Holders = append(v.Holders, h)
			}
		}
	}
	return v
}

// fromPidFile classifies the process of the target's pid file.
func (v *Verdict) fromPidFile() {
	pidFile := v.Target.PidFile
	pid, err := ReadPidFile(pidFile)
	switch {
	case errors.Is(err, ErrNoPidFile):
		v.State = NoPidFile
		return
	case err != nil:
		v.State, v.PidErr = BadPidFile, err
		return
	}
	v.Pid = pid
	if pid == os.Getpid() || !Alive(pid) {
		v.State = Stale
		return
	}
	v.Cmdline = Cmdline(pid)
	since, known := StartTime(pid)
	if !looksLikeHomeserver(v.Cmdline) {
		v.State = Recycled
		return
	}
	// Started with the target's configs, it is the target's homeserver;
	// started with others, another's. Without readable configs it is taken
	// on the evidence above and below.
	proven, other := false, false
	if len(v.Target.Configs) > 0 {
		if args, ok := ConfigArgs(pid); ok {
			proven = sameConfigs(args, v.Target.Configs)
			other = !proven
		}
	}
	// A process started after its pid file was written holds a recycled
	// pid. The start time comes from the boot clock and the pid file's time
	// from the wall clock, which a step (NTP, a virtual machine resumed)
	// moves: so a process its configs prove is not judged by it.
	if st, err := os.Stat(pidFile); !proven && known && err == nil && since.After(st.ModTime().Add(2*time.Second)) {
		v.State = Recycled
		return
	}
	if other {
		v.State = Other
		return
	}
	v.State = Running
	h := Holder{Pid: pid, Cmdline: v.Cmdline, PidFile: pidFile}
	if known {
		h.Since = since
	}
	v.Holders = append(v.Holders, h)
}

// startedWith lists the live homeserver processes started with these
// configs (compared file by file), in pid order: the engine or Synapse, not
// a tool (port_db, update_database, synctl...) given the same configs. The
// engine's daemon and the parent waiting for it to be ready both count,
// except to themselves: this process and its ancestors are left out.
func startedWith(configs []string) []Holder {
	entries, _ := os.ReadDir("/proc")
	mine := map[int]bool{}
	for pid := os.Getpid(); pid > 1 && !mine[pid]; pid = parentPid(pid) {
		mine[pid] = true
	}
	var out []Holder
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || mine[pid] {
			continue
		}
		// The command line first: most processes end there, with one read.
		args := Args(pid)
		if !serving(args) || !Alive(pid) {
			continue
		}
		if got, ok := ConfigArgs(pid); !ok || !sameConfigs(got, configs) {
			continue
		}
		h := Holder{Pid: pid, Cmdline: strings.TrimSpace(strings.Join(args, " ")), Args: args, ByConfigs: true}
		h.Since, _ = StartTime(pid)
		out = append(out, h)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Pid < out[j].Pid })
	return out
}

// Refusal is the error of a tool that must not change a database in use
// (nil when nothing uses it). then is the tool's advice once the holders
// are stopped: what was left unchanged and how to go ahead anyway.
func (v Verdict) Refusal(then string) error {
	if !v.Running() {
		return nil
	}
	return &InUseError{Holders: v.Holders, Synctl: v.Target.synctl(), Then: then}
}

// Conflict is the error of a pid file naming another homeserver process
// (State Other); nil otherwise.
func (v Verdict) Conflict() error {
	if v.State != Other {
		return nil
	}
	return &SharedPidFileError{PidFile: v.Target.PidFile, Pid: v.Pid, Cmdline: v.Cmdline}
}

// InUseError refuses a change to a database in use. It names the holders,
// and its hint says how to stop each one.
type InUseError struct {
	Holders []Holder
	// Synctl names the homeserver asked about in synctl's arguments (for
	// the hint).
	Synctl string
	// Then is the caller's advice after stopping them.
	Then string
}

func (e *InUseError) Error() string {
	var parts, files []string
	held := map[string][]string{}
	for _, h := range e.Holders {
		if h.PidFile != "" {
			parts = append(parts, fmt.Sprintf("the homeserver is running (%s; from pid_file %q)", h, h.PidFile))
			continue
		}
		if held[h.File] == nil {
			files = append(files, h.File)
		}
		held[h.File] = append(held[h.File], h.String())
	}
	for _, f := range files {
		parts = append(parts, fmt.Sprintf("the SQLite file %q is open in another process (%s)", f, strings.Join(held[f], "; ")))
	}
	return strings.Join(parts, "; ")
}

// Class is fault.InUse.
func (e *InUseError) Class() fault.Class { return fault.InUse }

// Hint names each holder and how to stop it: synctl for the homeserver of
// the pid file, the process itself for one holding the SQLite file (a
// homeserver without a pid file, a sqlite3 shell, a backup...).
func (e *InUseError) Hint() string {
	var lines []string
	for _, h := range e.Holders {
		switch {
		case h.PidFile != "":
			lines = append(lines, "stop it first: synctl stop "+e.Synctl)
		case isTool(h.argv()):
			lines = append(lines, fmt.Sprintf("it is not the homeserver but another tool at work: wait for it to finish (pid %d: %s)", h.Pid, h.Cmdline))
		default:
			lines = append(lines, fmt.Sprintf("stop the process holding it first (pid %d: %s)", h.Pid, h.Cmdline))
		}
	}
	if e.Then != "" {
		lines = append(lines, e.Then)
	}
	return strings.Join(lines, "\n")
}

// argv is the holder's arguments: Args, else Cmdline split at spaces.
func (h Holder) argv() []string {
	if h.Args != nil {
		return h.Args
	}
	return strings.Fields(h.Cmdline)
}

// isTool says whether a process's arguments are one of the tools that open
// a homeserver's SQLite file for a while and then exit (hsops' or
// Synapse's): the program itself, or the script or module (-m) a Python
// interpreter runs, e.g. python3 -m synapse._scripts.synapse_port_db.
func isTool(args []string) bool {
	switch program(args) {
	case "port_db", "update_database", "hsload", "synapse_port_db", "update_synapse_database":
		return true
	}
	return false
}

// serving says whether a process's arguments can be a homeserver process
// serving (or starting to): Synapse's app modules run by Python, or a
// program that looks like the engine, not a tool (port_db, synctl...) nor
// one of the engine's commands that take a config and end
// (register-user, generate-config).
func serving(args []string) bool {
	if len(args) == 0 {
		return false
	}
	if strings.HasPrefix(filepath.Base(args[0]), "python") {
		run, module, ok := pythonRuns(args[1:])
		return ok && module && strings.HasPrefix(run, "synapse.app.")
	}
	if isTool(args) || program(args) == "synctl" {
		return false
	}
	for _, a := range args[1:] {
		switch a {
		case "register-user", "generate-config", "--generate-config", "--generate-keys", "completion", "help", "--help", "-h", "--version":
			return false
		}
	}
	return looksLikeHomeserver(strings.Join(args, " "))
}

// program names what a process's arguments run: the program's file name,
// or the script or module a Python interpreter runs ("" when neither can
// be told), without ".py".
func program(args []string) string {
	if len(args) == 0 {
		return ""
	}
	name := filepath.Base(args[0])
	if strings.HasPrefix(name, "python") {
		var ok bool
		if name, ok = pythonTarget(args[1:]); !ok {
			return ""
		}
	}
	return strings.TrimSuffix(name, ".py")
}

// pythonTarget is what a Python interpreter's arguments run: the last
// component of the module of -m, or the script's file name; not ok for a
// command given with -c, or nothing.
func pythonTarget(args []string) (string, bool) {
	run, module, ok := pythonRuns(args)
	if module {
		run = run[strings.LastIndex(run, ".")+1:]
	}
	return run, ok
}

// pythonRuns is what a Python interpreter's arguments run: the module of
// -m (module true), or the script's file name; not ok for a command given
// with -c, or nothing. Short options may be grouped (-um MOD, -mMOD); -W
// and -X take a value.
func pythonRuns(args []string) (run string, module, ok bool) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "-" || !strings.HasPrefix(a, "-") {
			return filepath.Base(a), false, a != "-"
		}
		if strings.HasPrefix(a, "--") {
			continue // long options take no value that could be a script
		}
		for k := 1; k < len(a); k++ {
			switch a[k] {
			case 'c':
				return "", false, false
			case 'm', 'W', 'X':
				value := a[k+1:]
				if value == "" {
					if i+1 >= len(args) {
						return "", false, false
					}
					i++
					value = args[i]
				}
				if a[k] == 'm' {
					return value, true, true
				}
				k = len(a) // the value ends the group
			}
		}
	}
	return "", false, false
}

// synctl is how synctl's command line names the target.
func (t Target) synctl() string {
	switch {
	case t.Synctl != "":
		return t.Synctl
	case len(t.Configs) == 1:
		return t.Configs[0]
	}
	return "<config>"
}

// sameConfigs reports whether two lists of config paths load the same
// files, directories expanded as config.Load expands them.
func sameConfigs(a, b []string) bool {
	if fa, _, err := config.FindFiles(a); err == nil {
		a = fa
	}
	if fb, _, err := config.FindFiles(b); err == nil {
		b = fb
	}
	return SameFiles(a, b)
}

// SharedPidFileError reports a pid file naming another homeserver process:
// one started with other configs. That process is never signalled in the
// place of the one asked about.
type SharedPidFileError struct {
	PidFile string
	Pid     int
	Cmdline string
	// Process names the process the pid file belongs to ("" when the
	// caller is that process).
	Process string
}

func (e *SharedPidFileError) Error() string {
	of := ""
	if e.Process != "" {
		of = " of " + e.Process
	}
	return fmt.Sprintf("the pid file %s%s names pid %d, another homeserver process (%s): give each process its own pid file",
		e.PidFile, of, e.Pid, e.Cmdline)
}

// Class is fault.Config: two processes configured with one pid file.
func (e *SharedPidFileError) Class() fault.Class { return fault.Config }

// Hint says which keys to change.
func (e *SharedPidFileError) Hint() string {
	return "set a pid_file (worker_pid_file for a worker) of its own in each process's config"
}
