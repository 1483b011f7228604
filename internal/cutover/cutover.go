package cutover

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"hsops/internal/config"
	"hsops/internal/db"
	"hsops/internal/fault"
	"hsops/internal/porter"
	"hsops/internal/portstate"
	"hsops/internal/proc"
	"hsops/internal/sqlitecopy"
)

// The phases of a switch, in order.
const (
	PhaseChecks    = "checks"
	PhasePreCopy   = "pre-copy"
	PhaseStop      = "stop"
	PhaseFinalPort = "final-port"
	PhaseRewrite   = "rewrite"
	PhaseStart     = "start"
	PhaseRollback  = "rollback"
)

// The verifications of the final port.
const (
	// VerifyFull compares the row counts and content checksums of what the
	// final port moved: the rows it copied, and the re-copied tables whole.
	VerifyFull = "full"
	// VerifyCounts compares the row counts of what it moved.
	VerifyCounts = "counts"
	// VerifyWhole compares the row counts and content checksums of every
	// table whole, as port_db --verify: it reads both databases whole.
	VerifyWhole = "whole"
)

// Errors of a switch refused before anything changed.
var (
	// ErrNotThisDatabase is a config whose database is not the SQLite file
	// given, or already another PostgreSQL database.
	ErrNotThisDatabase = fault.New(fault.Config, "the config does not use this database",
		"give --sqlite-database the file the config's database section names, and --switch-config that config")
	// ErrIncompletePort is a config already switched to a database whose
	// port is not complete (someone switched by hand, or ran port_db on it
	// since).
	ErrIncompletePort = fault.New(fault.Target, "the config already names PostgreSQL, but its port is not complete",
		"put the SQLite database section back (the copy beside the config, *.sqlite-<date>), then run the same command again")
)

// Options configure a switch.
type Options struct {
	// SQLitePath is the live SQLite file (--sqlite-database).
	SQLitePath string
	// PostgresConfig is a config whose database section is the target
	// (--postgres-config); that section is what the deployment's config
	// gets.
	PostgresConfig string
	// Config is the deployment's config: a file or a directory, as synctl's
	// CONFIG argument.
	Config string
	// AllDir is synctl's -a: a directory of worker configs, all stopped and
	// started with the main process.
	AllDir string
	// Launcher starts the processes as synctl does (Python: real Synapse).
	Launcher proc.Launcher
	// Timeout bounds the stop of each process and the wait for each
	// /health, as synctl's --timeout (default 60s).
	Timeout time.Duration
	// BatchSize and Jobs are the porter's.
	BatchSize, Jobs int
	// PreCopyPasses is the most snapshots ported while the homeserver
	// serves (default 3); another is made while the last took longer than
	// PreCopyGoal (default 10s), since what piled up meanwhile is what the
	// downtime will copy.
	PreCopyPasses int
	PreCopyGoal   time.Duration
	// Verify is how the final port is verified before the config names
	// PostgreSQL: VerifyFull (default) compares row counts and content
	// checksums of what it moved, VerifyCounts their row counts, and
	// VerifyWhole every table whole as port_db --verify does (reading both
	// databases whole while the homeserver is down). The pre-copy's first
	// pass compares every table whole, and each later pass what it moved
	// (counts only with VerifyCounts).
	Verify string
	// DryRun makes every check and reports the plan; it changes nothing.
	DryRun bool
	// Progress receives each step (nil: none). It is called synchronously.
	Progress func(Event)
}

// Event is one step of a switch.
type Event struct {
	// Type is "phase" (a phase begins), "phase_done", "check", "pass" (a
	// pre-copy pass ended), "process" (a process was stopped or started),
	// "port" (the porter's own event, in Port) or "rollback".
	Type    string        `json:"event"`
	Phase   string        `json:"phase,omitempty"`
	Message string        `json:"message,omitempty"`
	Rows    int64         `json:"rows,omitempty"`
	Millis  int64         `json:"ms,omitempty"`
	Port    *porter.Event `json:"port,omitempty"`
}

// Check is one check of the plan.
type Check struct {
	Name   string `json:"check"`
	Detail string `json:"detail"`
}

// Phase is a phase's time.
type Phase struct {
	Name   string `json:"phase"`
	Millis int64  `json:"ms"`
}

// Pass is one pre-copy pass: a snapshot of the live file, ported.
type Pass struct {
	Snapshot sqlitecopy.Copy `json:"snapshot"`
	Rows     int64           `json:"rows"`
	Millis   int64           `json:"ms"`
}

// Result is what a switch did (or, with DryRun, would do).
type Result struct {
	DryRun bool `json:"dry_run"`
	// Resumed: the config already named the completely ported database (a
	// switch killed after its rewrite); only the start was left.
	Resumed   bool     `json:"resumed,omitempty"`
	Source    string   `json:"source"`
	Target    string   `json:"target"`
	File      string   `json:"config_file"`
	Backup    string   `json:"config_backup,omitempty"`
	Processes []string `json:"processes"`
	Checks    []Check  `json:"checks"`
	Plan      []string `json:"plan,omitempty"`
	Phases    []Phase  `json:"phases"`
	PreCopy   []Pass   `json:"pre_copy"`
	// FinalRows are the rows the port moved while the homeserver was
	// stopped, FinalTables per table (only those that moved rows).
	FinalRows   int64            `json:"final_rows"`
	FinalTables map[string]int64 `json:"final_tables,omitempty"`
	// FinalPort is where the final port's time went.
	FinalPort *FinalPort `json:"final_port,omitempty"`
	// Downtime is from the stop to every process healthy on PostgreSQL.
	Downtime       time.Duration `json:"-"`
	DowntimeMillis int64         `json:"downtime_ms"`
	RolledBack     bool          `json:"rolled_back,omitempty"`
	Reason         string        `json:"reason,omitempty"`
	NewSection     string        `json:"new_section,omitempty"`
}

// FinalPort is what the final port did, as the porter reported it.
type FinalPort struct {
	// Phases are the port's phases (checks, sequences, copy, index
	// rebuild, verify), Steps the parts of its checks (which overlap).
	Phases []porter.Phase `json:"phases"`
	Steps  []porter.Phase `json:"steps,omitempty"`
	// PageCheck is how the source's pages were checked: "as read" when the
	// pre-copy had checked them, else "quick_check" (the whole file).
	PageCheck string `json:"page_check"`
	// Verified is what the verification covered: "moved rows" or "every
	// table".
	Verified string `json:"verified"`
	// Kept are the re-copied tables found the same on both sides, not
	// copied again.
	Kept []string `json:"kept,omitempty"`
}

// RolledBackError is a switch that failed before the homeserver served
// from PostgreSQL and was undone: the old config is back and the homeserver
// runs on SQLite as it did.
type RolledBackError struct {
	Phase string
	Err   error
	// Stopped: the homeserver was not running before the switch, and is
	// left stopped.
	Stopped bool
}

func (e *RolledBackError) Error() string {
	state := "the homeserver runs on SQLite"
	if e.Stopped {
		state = "the homeserver, stopped before, is left stopped"
	}
	return fmt.Sprintf("the switch failed at %s and was rolled back (the old config is back, %s): %s",
		e.Phase, state, oneLine(e.Err))
}

func (e *RolledBackError) Unwrap() error { return e.Err }

// Class is fault.RolledBack.
func (e *RolledBackError) Class() fault.Class { return fault.RolledBack }

// Hint is the cause's hint, then how to go on.
func (e *RolledBackError) Hint() string {
	h := "nothing was lost: what PostgreSQL holds is kept, so running the same command again moves only what is new"
	if c := fault.HintOf(e.Err); c != "" {
		return c + "; then run the same command again (" + h + ")"
	}
	return "fix the cause, then run the same command again (" + h + ")"
}

// RollbackFailedError is a switch whose way back failed too: the message
// says where things stand.
type RollbackFailedError struct {
	Phase    string
	Err      error
	Rollback error
	Config   string
	Restored bool
}

func (e *RollbackFailedError) Error() string {
	state := "the config is the SQLite one again"
	if !e.Restored {
		state = "the config could not be put back"
	}
	return fmt.Sprintf("the switch failed at %s (%s), and the way back failed: %s (%s)", e.Phase, oneLine(e.Err), oneLine(e.Rollback), state)
}

func (e *RollbackFailedError) Unwrap() error { return e.Rollback }

// Class is fault.Down: the homeserver is not serving.
func (e *RollbackFailedError) Class() fault.Class { return fault.Down }

// Hint says how to get the homeserver serving again.
func (e *RollbackFailedError) Hint() string {
	if !e.Restored {
		return fmt.Sprintf("copy the kept config back over %s (the file beside it named *.sqlite-<date>), then: synctl start %s", e.Config, e.Config)
	}
	return fmt.Sprintf("start it: synctl start %s; its log says why it did not", e.Config)
}

func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

// switcher is one switch.
type switcher struct {
	o        Options
	res      *Result
	target   config.Database
	pg       *config.Config
	plan     proc.Plan
	sup      *proc.Supervisor
	edit     *ConfigEdit
	running  bool // the main process was running before the switch
	served   bool // the main process answered /health on PostgreSQL
	applied  bool // the config was rewritten
	snapshot string
	// first is the snapshot the checks made, ported by the first pass.
	first *sqlitecopy.Copy
	// checked: a pre-copy pass ported a snapshot whose every page was
	// checked (quick_check), minutes before the final port.
	checked bool
	// failure is the last process failure the supervisor reported, in its
	// own words (a roll-back's reason).
	failure string
}

func (s *switcher) emit(ev Event) {
	if s.o.Progress != nil {
		s.o.Progress(ev)
	}
}

// phase runs one phase, timing it.
func (s *switcher) phase(name string, fn func() error) error {
	s.emit(Event{Type: "phase", Phase: name})
	t0 := time.Now()
	err := fn()
	ms := time.Since(t0).Milliseconds()
	s.res.Phases = append(s.res.Phases, Phase{Name: name, Millis: ms})
	if err == nil {
		s.emit(Event{Type: "phase_done", Phase: name, Millis: ms})
	}
	return err
}

func (s *switcher) check(name, format string, args ...any) {
	c := Check{Name: name, Detail: fmt.Sprintf(format, args...)}
	s.res.Checks = append(s.res.Checks, c)
	s.emit(Event{Type: "check", Phase: PhaseChecks, Message: c.Name + ": " + c.Detail})
}

// Run switches the deployment to PostgreSQL (with DryRun, checks and
// reports the plan). Before the stop, a failure changes nothing; from the
// stop until the main process answers /health on PostgreSQL, a failure is
// undone (a *RolledBackError); after it, it is reported.
func Run(ctx context.Context, o Options) (*Result, error) {
	if o.Timeout <= 0 {
		o.Timeout = 60 * time.Second
	}
	if o.PreCopyPasses <= 0 {
		o.PreCopyPasses = 3
	}
	if o.PreCopyGoal <= 0 {
		o.PreCopyGoal = 10 * time.Second
	}
	switch o.Verify {
	case "":
		o.Verify = VerifyFull
	case VerifyFull, VerifyCounts, VerifyWhole:
	default:
		return nil, fault.Usagef("unknown verification %q: full, counts or whole", o.Verify)
	}
	s := &switcher{o: o, res: &Result{DryRun: o.DryRun}, snapshot: o.SQLitePath + ".switch-snapshot"}
	s.sup = &proc.Supervisor{Launcher: o.Launcher, Timeout: o.Timeout, Progress: s.processEvent}
	if err := s.phase(PhaseChecks, func() error { return s.prepare(ctx) }); err != nil {
		return s.res, err
	}
	if o.DryRun {
		return s.res, nil
	}
	if s.res.Resumed {
		t0 := time.Now()
		err := s.phase(PhaseStart, func() error { return s.sup.Start(ctx, s.plan) })
		s.setDowntime(t0)
		if err != nil && !fault.IsInterrupted(err) {
			return s.res, fault.Wrap(fault.Down, fmt.Errorf("start on PostgreSQL: %w", err),
				"the config names the complete port; the processes' reasons are printed above: fix them, then run the same command again (or synctl start)")
		}
		return s.res, err
	}
	if err := s.phase(PhasePreCopy, func() error { return s.preCopy(ctx) }); err != nil {
		return s.res, err
	}
	t0 := time.Now()
	if err := s.phase(PhaseStop, func() error { return s.sup.Stop(ctx, s.plan) }); err != nil {
		return s.res, s.rollback(ctx, PhaseStop, err)
	}
	if err := s.phase(PhaseFinalPort, func() error { return s.finalPort(ctx) }); err != nil {
		return s.res, s.rollback(ctx, PhaseFinalPort, err)
	}
	if err := s.phase(PhaseRewrite, func() error {
		s.applied = true // from here the file may be the new one
		return s.edit.Apply()
	}); err != nil {
		return s.res, s.rollback(ctx, PhaseRewrite, err)
	}
	err := s.phase(PhaseStart, func() error { return s.sup.Start(ctx, s.plan) })
	if err != nil && !s.served {
		return s.res, s.rollback(ctx, PhaseStart, err)
	}
	s.setDowntime(t0)
	if err != nil {
		return s.res, fault.Wrap(fault.Down, fmt.Errorf("the homeserver serves from PostgreSQL, but: %w", err),
			fmt.Sprintf("the main process answers on PostgreSQL, so the switch stands; start the rest: synctl %sstart %s", allFlag(s.o.AllDir), s.o.Config))
	}
	return s.res, nil
}

func allFlag(dir string) string {
	if dir == "" {
		return ""
	}
	return "-a " + dir + " "
}

func (s *switcher) setDowntime(t0 time.Time) {
	s.res.Downtime = time.Since(t0)
	s.res.DowntimeMillis = s.res.Downtime.Milliseconds()
}

// processEvent turns the supervisor's events into the switch's, and notes
// when the main process serves from PostgreSQL.
func (s *switcher) processEvent(e proc.Event) {
	if e.Kind == proc.Started && e.Process.Main && (e.Healthy || e.Process.HealthURL == "") && s.applied {
		s.served = true
	}
	msg := describe(e)
	if e.Kind == proc.StartFailed || e.Kind == proc.Unhealthy {
		s.failure, _, _ = strings.Cut(msg, " hint: ")
	}
	if msg != "" {
		s.emit(Event{Type: "process", Message: msg, Millis: e.Elapsed.Milliseconds()})
	}
}

// describe renders a supervisor event in synctl's words.
func describe(e proc.Event) string {
	name := e.Process.Name()
	switch e.Kind {
	case proc.AlreadyRunning:
		return fmt.Sprintf("%s already running (pid %d)", name, e.Pid)
	case proc.AlreadyStarting:
		return fmt.Sprintf("%s already starting (pid %d): waiting for it", name, e.Pid)
	case proc.StartFailed:
		out := ""
		if e.Output != "" {
			out = ": " + strings.Join(strings.Fields(e.Output), " ")
		}
		return fmt.Sprintf("%s failed to start (exit code %d)%s", name, e.ExitCode, out)
	case proc.Started:
		if e.Healthy {
			return fmt.Sprintf("started %s, healthy after %.2fs", name, e.Elapsed.Seconds())
		}
		return "started " + name
	case proc.Unhealthy:
		return fmt.Sprintf("%s (pid %d) did not answer /health within %s", name, e.Pid, e.Timeout)
	case proc.PidFileMissing:
		return name + " not running (no pid file)"
	case proc.StalePidFile, proc.RecycledPid, proc.PidFileInvalid:
		return name + " not running (stale pid file removed)"
	case proc.Vanished:
		return name + " exited before it was signalled"
	case proc.Signalled:
		return fmt.Sprintf("stopping %s (pid %d)", name, e.Pid)
	case proc.Killed:
		return fmt.Sprintf("killed %s (pid %d) after %s", name, e.Pid, e.Timeout)
	case proc.StopTimedOut:
		return fmt.Sprintf("%s (pid %d) did not stop within %s", name, e.Pid, e.Timeout)
	case proc.AllExited:
		return "all processes exited"
	case proc.SignalFailed:
		return fmt.Sprintf("cannot stop %s: %v", name, e.Err)
	}
	return ""
}

// prepare makes every check; it changes nothing.
func (s *switcher) prepare(ctx context.Context) error {
	o := s.o
	var err error
	if s.pg, err = config.Load(o.PostgresConfig); err != nil {
		return err
	}
	if s.target, err = s.pg.MainDatabase(); err != nil {
		return err
	}
	if !s.target.IsPostgres() {
		return fault.Errorf(fault.NotPostgres, "set database.name to psycopg2 in "+o.PostgresConfig, "database must use the 'psycopg2' connector")
	}
	s.res.Source, s.res.Target = o.SQLitePath, s.target.String()
	if err := s.discover(); err != nil {
		return err
	}
	cur, err := currentDatabase(o.Config)
	if err != nil {
		return err
	}
	if cur.IsPostgres() {
		return s.prepareResume(ctx, cur)
	}
	if err := sameFile(cur.SQLitePath(), o.SQLitePath); err != nil {
		return err
	}
	s.check("config", "%s names the SQLite database %s", o.Config, cur.SQLitePath())
	if s.edit, err = PlanConfigEdit(o.Config, o.PostgresConfig, time.Now()); err != nil {
		return err
	}
	s.res.File, s.res.Backup, s.res.NewSection = s.edit.File, s.edit.Backup, s.edit.NewSection
	s.check("config writable", "%s is rewritten (its database section only; the old file kept as %s)", s.edit.File, s.edit.Backup)
	// The port's own checks, in full, on what it would port: the live file
	// when the homeserver is stopped; else a snapshot (its integrity check
	// reads every page, which in rollback-journal mode would hold the
	// homeserver's writes for as long), which the first pre-copy pass then
	// ports.
	checked := o.SQLitePath
	if s.running {
		removeSQLite(s.snapshot)
		cp, err := sqlitecopy.Backup(ctx, o.SQLitePath, s.snapshot, nil)
		if err != nil {
			removeSQLite(s.snapshot)
			return err
		}
		s.first, checked = &cp, s.snapshot
	}
	res, err := porter.Run(ctx, porter.Options{SQLitePath: checked, Target: s.target, ServerName: s.pg.ServerName,
		BatchSize: o.BatchSize, Jobs: o.Jobs, DryRun: true})
	if o.DryRun || err != nil {
		removeSQLite(s.snapshot)
	}
	if err != nil {
		return err
	}
	var rows int64
	for _, t := range res.Tables {
		rows += t.Copied
	}
	what := "empty: the schema is created"
	if res.Resumed {
		what = "a port of this database: it is continued"
	} else if !res.CreatedSchema && res.Mode == "synapse" {
		what = "prepared by Synapse"
	}
	s.check("postgresql", "%s reachable, %s; %d rows to copy", res.Target, what, rows)
	s.res.Plan = []string{
		fmt.Sprintf("pre-copy: snapshot %s (SQLite backup API) and port it while the homeserver serves, up to %d times while a pass takes over %s", o.SQLitePath, o.PreCopyPasses, o.PreCopyGoal),
		fmt.Sprintf("stop: %s (as synctl stop, timeout %s)", strings.Join(s.res.Processes, ", "), o.Timeout),
		fmt.Sprintf("final port: %s once more (only new rows of append-only tables, and the re-copied tables that changed), then verify (%s)", o.SQLitePath, verifyWhat(o.Verify)),
		fmt.Sprintf("rewrite: the database section of %s (old file kept as %s)", s.edit.File, s.edit.Backup),
		"start: main process, then workers (as synctl start), and wait for every /health",
		"on failure before the homeserver serves from PostgreSQL: the old config back, the homeserver started again on SQLite",
	}
	return nil
}

// discover finds the processes (all of them: the main process even when
// -a does not name it), and which run.
func (s *switcher) discover() error {
	o := s.o
	pl, err := proc.Discover(proc.Selection{Config: o.Config, AllDir: o.AllDir})
	if err != nil {
		return err
	}
	if pl.Main == nil {
		m, err := proc.Discover(proc.Selection{Config: o.Config})
		if err != nil {
			return err
		}
		pl.Main = m.Main
	}
	s.plan = pl
	for _, p := range pl.StartOrder() {
		if !p.Main {
			data, err := os.ReadFile(p.Configs[1])
			if err != nil {
				return err
			}
			if sec, err := findSection(p.Configs[1], data, "database"); err != nil {
				return err
			} else if sec != nil {
				return fmt.Errorf("%w: the worker config %s sets its own database section", ErrConfigEdit, p.Configs[1])
			}
		}
		v := proc.HomeserverRunning(p.Target())
		if err := v.Conflict(); err != nil {
			return err
		}
		state := "stopped"
		switch v.State {
		case proc.Running:
			state = fmt.Sprintf("running, pid %d", v.Pid)
		case proc.Starting:
			state = fmt.Sprintf("starting, pid %d", v.Pid)
		}
		if state != "stopped" && p.Main {
			s.running = true
		}
		s.res.Processes = append(s.res.Processes, p.Name())
		s.check("process", "%s (%s)", p.Name(), state)
	}
	return nil
}

// prepareResume accepts a config already switched to this target when the
// port is complete: a switch killed after its rewrite.
func (s *switcher) prepareResume(ctx context.Context, cur config.Database) error {
	if !sameDatabase(cur, s.target) {
		return fmt.Errorf("%w: %s already names PostgreSQL (%s), not %s", ErrNotThisDatabase, s.o.Config, cur, s.target)
	}
	d, err := db.Open(ctx, s.target, db.Options{ReadOnly: true, AppName: "hsops port_db"})
	if err != nil {
		return err
	}
	defer d.Close()
	// Complete means copied and every index and key dropped for the copy
	// back (portstate's rule, which the homeserver's start-up applies too).
	st, err := portstate.Read(ctx, d)
	if err != nil {
		return err
	}
	if !st.Ours || !st.Done() {
		return fmt.Errorf("%w: %s", ErrIncompletePort, s.target)
	}
	s.res.Resumed = true
	s.check("config", "%s already names %s, whose port is complete: only the start is left", s.o.Config, s.target)
	s.res.Plan = []string{"start: main process, then workers (as synctl start), and wait for every /health"}
	return nil
}

// sameFile checks that the config's SQLite database is the file given.
func sameFile(configured, given string) error {
	a, errA := os.Stat(configured)
	b, errB := os.Stat(given)
	if errA != nil || errB != nil || !os.SameFile(a, b) {
		return fmt.Errorf("%w: its database is %s, and --sqlite-database is %s", ErrNotThisDatabase, configured, given)
	}
	return nil
}

// preCopy ports snapshots of the live file while the homeserver serves.
// With the homeserver stopped, there is nothing to gain: the final port
// does it all.
func (s *switcher) preCopy(ctx context.Context) error {
	defer removeSQLite(s.snapshot)
	if !s.running {
		s.emit(Event{Type: "pass", Phase: PhasePreCopy, Message: "the homeserver is not running: the final port copies everything"})
		return nil
	}
	for i := 1; i <= s.o.PreCopyPasses; i++ {
		t0 := time.Now()
		var cp sqlitecopy.Copy
		opts := s.portOptions(s.snapshot)
		// Every row PostgreSQL holds at the end is verified once after it
		// was written: by the first pass, which compares every table whole
		// (whatever earlier runs, killed ones included, left there), or by
		// the later pass or final port that copied it.
		if i == 1 {
			opts.Verify = true
		} else {
			opts.VerifyMoved = s.movedCheck()
		}
		if i == 1 && s.first != nil {
			// The checks ran quick_check on this very snapshot.
			cp, opts.PagesChecked = *s.first, true
		} else {
			removeSQLite(s.snapshot)
			var err error
			if cp, err = sqlitecopy.Backup(ctx, s.o.SQLitePath, s.snapshot, nil); err != nil {
				return err
			}
		}
		res, err := porter.Run(ctx, opts)
		if err != nil {
			return err
		}
		s.checked = true
		p := Pass{Snapshot: cp, Rows: res.Rows, Millis: time.Since(t0).Milliseconds()}
		s.res.PreCopy = append(s.res.PreCopy, p)
		s.emit(Event{Type: "pass", Phase: PhasePreCopy, Rows: p.Rows, Millis: p.Millis,
			Message: fmt.Sprintf("pass %d: snapshot (%s, %.1f MB) and port: %d rows in %.2fs", i, cp.Method, float64(cp.Bytes)/1e6, p.Rows, float64(p.Millis)/1000)})
		if time.Since(t0) < s.o.PreCopyGoal {
			break
		}
	}
	return nil
}

func removeSQLite(path string) {
	for _, p := range []string{path, path + "-journal", path + "-wal", path + "-shm"} {
		_ = os.Remove(p)
	}
}

func (s *switcher) portOptions(path string) porter.Options {
	return porter.Options{SQLitePath: path, Target: s.target, ServerName: s.pg.ServerName, BatchSize: s.o.BatchSize,
		Jobs: s.o.Jobs, Progress: func(ev porter.Event) {
			if ev.Type == "state" || ev.Type == "table_done" || ev.Type == "warning" || ev.Type == "note" {
				s.emit(Event{Type: "port", Port: &ev})
			}
		}}
}

// finalPort ports the live file with the homeserver stopped, and verifies.
// Its cost follows what moved (porter's final.go says why each part is
// safe): the pages were checked by the pre-copy, so they are checked as
// they are read; the re-copied tables that are the same on both sides are
// kept; what moved is verified.
func (s *switcher) finalPort(ctx context.Context) error {
	o := s.portOptions(s.o.SQLitePath)
	o.PagesChecked = s.checked
	o.KeepUnchanged, o.EstimateAlready = true, true
	switch {
	case s.o.Verify == VerifyWhole, s.o.Verify == VerifyFull && !s.checked:
		// Without a pre-copy nothing was verified yet: the homeserver was
		// stopped before the switch, and the final port moves it all.
		o.Verify = true
	default:
		o.VerifyMoved = s.movedCheck()
	}
	res, err := porter.Run(ctx, o)
	if res != nil {
		fp := &FinalPort{Phases: res.Phases, Steps: res.Steps, PageCheck: res.PageCheck, Verified: res.Verified}
		var diffs []string
		for _, t := range res.Tables {
			if t.Kept {
				fp.Kept = append(fp.Kept, t.Name)
			}
			if t.Verify != nil && !t.Verify.Match {
				diffs = append(diffs, fmt.Sprintf("%s (%s)", t.Name, t.Verify.Detail))
			}
		}
		s.res.FinalPort = fp
		// The switch prints no port summary: the reason names them.
		if errors.Is(err, porter.ErrVerify) && len(diffs) > 0 {
			err = fmt.Errorf("%w: %s", porter.ErrVerify, strings.Join(diffs, "; "))
		}
	}
	if err != nil {
		return err
	}
	s.res.FinalRows = res.Rows
	s.res.FinalTables = map[string]int64{}
	for _, t := range res.Tables {
		if t.Copied > 0 {
			s.res.FinalTables[t.Name] = t.Copied
		}
	}
	return nil
}

// movedCheck is how what a port moved is compared: counts with
// VerifyCounts, else counts and checksums.
func (s *switcher) movedCheck() porter.MovedCheck {
	if s.o.Verify == VerifyCounts {
		return porter.MovedCounts
	}
	return porter.MovedChecksums
}

// verifyWhat says what a verification compares.
func verifyWhat(v string) string {
	switch v {
	case VerifyCounts:
		return "counts: row counts of what moved"
	case VerifyWhole:
		return "whole: counts and checksums of every table"
	}
	return "full: counts and checksums of what moved"
}

// rollback undoes a switch that failed at phase: the processes stopped
// (killed after the timeout if they must), the old config back, the
// homeserver started again on SQLite if it was running before. It runs to
// the end even when the run was interrupted.
func (s *switcher) rollback(ctx context.Context, phase string, cause error) error {
	ctx = context.WithoutCancel(ctx)
	if phase == PhaseStart && s.failure != "" {
		cause = fmt.Errorf("%w (%s)", cause, s.failure)
	}
	s.res.RolledBack, s.res.Reason = true, oneLine(cause)
	s.emit(Event{Type: "rollback", Phase: phase, Message: oneLine(cause)})
	err := s.phase(PhaseRollback, func() error {
		if s.applied {
			kill := *s.sup
			kill.Kill = true
			if err := kill.Stop(ctx, s.plan); err != nil {
				return err
			}
		}
		if s.edit != nil {
			if err := s.edit.Restore(); err != nil {
				return err
			}
		}
		if !s.running {
			return nil
		}
		return s.sup.Start(ctx, s.plan)
	})
	if err != nil {
		restored := true
		if s.edit != nil {
			cur, rerr := os.ReadFile(s.edit.File)
			restored = rerr == nil && string(cur) == string(s.edit.Old)
		}
		return &RollbackFailedError{Phase: phase, Err: cause, Rollback: err, Config: s.o.Config, Restored: restored}
	}
	if fault.IsInterrupted(cause) {
		return fmt.Errorf("rolled back after the switch was interrupted at %s: %w", phase, cause)
	}
	return &RolledBackError{Phase: phase, Err: cause, Stopped: !s.running}
}
