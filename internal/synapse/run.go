package synapse

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"syscall"
	"time"

	"hsops/internal/db"
	"hsops/internal/fault"
	"hsops/schema"
)

// Options control Run.
type Options struct {
	// Python is the interpreter of the Synapse release.
	Python string
	// Config is the one homeserver config file passed as --database-config
	// (see WriteConfig).
	Config string
	// RunBackgroundUpdates passes --run-background-updates.
	RunBackgroundUpdates bool
	// Verbose passes -v (DEBUG logging).
	Verbose bool
	// Databases are the physical databases Config names, open (read-only
	// is enough): their bookkeeping is read before and after the run and
	// their background_updates polled while it runs.
	Databases []*db.DB
	// Dir is the working directory of the process ("" for the current one).
	Dir string
	// Env is added to the process's environment.
	Env []string
	// Poll is how often background_updates is read (default 250 ms).
	Poll time.Duration
	// AbortGrace is how long Synapse may take to exit by itself after it
	// logged that its background updates aborted (default 2 s).
	AbortGrace time.Duration
	// StopTimeout is how long the process has to exit after SIGTERM before
	// it is killed (default 10 s).
	StopTimeout time.Duration
	// OnEvent receives progress events (from the run's goroutine).
	OnEvent func(Event)
	// Log receives every output line as it comes (nil: kept only in the
	// result's tail).
	Log io.Writer
}

// Event reports progress.
type Event struct {
	// Type is "delta" (a delta started), "schema_done", "update_start",
	// "update_batch", "update_progress" (progress_json changed),
	// "update_done", "update_error" (a failed attempt), "aborted" (Synapse
	// gave up its background updates) or "stopping" (the process is being
	// stopped).
	Type     string `json:"event"`
	Database string `json:"database,omitempty"`
	Delta    string `json:"delta,omitempty"`
	Update   string `json:"update,omitempty"`
	// Items is the batch's items ("update_batch") or the update's total.
	Items int64 `json:"items,omitempty"`
	// Progress is the update's progress_json: its new value
	// ("update_progress"), or its value when the queue was last read
	// ("update_start"; empty if the run has not seen its row).
	Progress string `json:"progress_json,omitempty"`
	Millis   int64  `json:"ms,omitempty"`
	Error    string `json:"error,omitempty"`
	// Done, Total and ETAMillis are an update's items done (this run's
	// batches and those before), its estimated total and the time left at
	// the rate so far; set by Upgrade when the update's work is known.
	Done      int64 `json:"done,omitempty"`
	Total     int64 `json:"total,omitempty"`
	ETAMillis int64 `json:"eta_ms,omitempty"`
}

// DatabaseState is a database's bookkeeping at one moment.
type DatabaseState struct {
	Label   string                 `json:"label"`
	Schema  int                    `json:"schema_version"`
	Compat  int                    `json:"compat_version"`
	Applied []string               `json:"-"`
	Pending []schema.PendingUpdate `json:"pending_updates"`
}

// Delta is one delta the run applied (or failed on).
type Delta struct {
	Database string `json:"database"`
	// Key is "<V>/<file>", as applied_schema_deltas records it.
	Key string `json:"delta"`
	// Millis is its time as the log shows it (-1 when the log did not say).
	Millis  int64 `json:"ms"`
	Applied bool  `json:"applied"`
}

// Update is one background update the run worked on.
type Update struct {
	Database string `json:"database"`
	Name     string `json:"update"`
	// Millis is from its start (its first batch, or the end of the one
	// before) to its row's disappearance.
	Millis   int64  `json:"ms"`
	Batches  int    `json:"batches"`
	Items    int64  `json:"items"`
	Done     bool   `json:"done"`
	Failures int    `json:"failures,omitempty"`
	Error    string `json:"error,omitempty"`

	started time.Time
}

// Result is what a run did.
type Result struct {
	Before []DatabaseState `json:"before"`
	After  []DatabaseState `json:"after"`
	Deltas []Delta         `json:"deltas"`
	// Updates are in the order they started; updates still pending at the
	// end that never started are not listed (see After).
	Updates []Update `json:"updates"`
	// SchemaMillis is the blocking phase: from the start of the process to
	// the schema being up to date (what a homeserver's start-up waits for).
	SchemaMillis int64 `json:"schema_ms"`
	// BackgroundMillis is the background phase (0 without
	// --run-background-updates).
	BackgroundMillis int64 `json:"background_ms"`
	// Batches is the number of background batches the log reported.
	Batches  int   `json:"batches"`
	Millis   int64 `json:"ms"`
	ExitCode int   `json:"exit_code"`
	// Stopped is true when Run stopped the process (after Synapse's abort).
	Stopped bool `json:"stopped,omitempty"`
	// Failure is set when a delta or a background update failed (Run's
	// error is then this failure).
	Failure *Failure `json:"failure,omitempty"`
	// Tail is the end of the output.
	Tail []string `json:"-"`
}

// tailLines is how much output a result keeps.
const tailLines = 400

// Run runs update_synapse_database and watches it. A failing delta or
// background update returns the result together with its *Failure; other
// errors (the process cannot start, a database cannot be read) return a
// nil result.
func Run(ctx context.Context, opts Options) (*Result, error) {
	if opts.Poll == 0 {
		opts.Poll = 250 * time.Millisecond
	}
	if opts.AbortGrace == 0 {
		opts.AbortGrace = 2 * time.Second
	}
	if opts.StopTimeout == 0 {
		opts.StopTimeout = 10 * time.Second
	}
	w := &watcher{opts: opts, current: map[string]*Update{}, deltaStart: map[string]time.Time{}, progress: map[string]map[string]string{}}
	for _, d := range opts.Databases {
		st, err := readState(ctx, d)
		if err != nil {
			return nil, err
		}
		w.res.Before = append(w.res.Before, st)
		w.progress[d.Label] = progressOf(st.Pending)
	}
	err := w.run(ctx)
	if err != nil && w.res.Failure == nil {
		return nil, err
	}
	for _, d := range opts.Databases {
		st, rerr := readState(context.WithoutCancel(ctx), d)
		if rerr != nil {
			return nil, rerr
		}
		w.res.After = append(w.res.After, st)
	}
	w.finish()
	if w.res.Failure != nil {
		return &w.res, w.res.Failure
	}
	return &w.res, nil
}

func readState(ctx context.Context, d *db.DB) (DatabaseState, error) {
	st, err := schema.ReadState(ctx, d, d)
	if err != nil {
		return DatabaseState{}, fmt.Errorf("read the bookkeeping of %s: %w", d.Desc, err)
	}
	return DatabaseState{Label: d.Label, Schema: st.Version, Compat: st.Compat, Applied: st.Applied, Pending: st.Updates}, nil
}

func progressOf(us []schema.PendingUpdate) map[string]string {
	m := make(map[string]string, len(us))
	for _, u := range us {
		m[u.Name] = u.Progress
	}
	return m
}

type line struct {
	text string
	at   time.Time
}

// watcher is one run's state.
type watcher struct {
	opts Options
	res  Result

	start     time.Time
	schemaEnd time.Time
	bgStart   time.Time
	end       time.Time

	// lastDelta is the delta whose "Applying" line came last.
	lastDelta  string
	deltaStart map[string]time.Time
	deltaOrder []string

	// current is the running update of each database.
	current  map[string]*Update
	updates  []*Update
	lastEnd  time.Time
	progress map[string]map[string]string

	// errRecord is the last "Error doing update" record and its
	// traceback; errUpdate the update it was about.
	errRecord []string
	inErr     bool
	errUpdate *Update

	aborted   time.Time
	abortSnap string
	tail      []string
}

func (w *watcher) emit(ev Event) {
	if w.opts.OnEvent != nil {
		w.opts.OnEvent(ev)
	}
}

func (w *watcher) run(ctx context.Context) error {
	c, err := w.startProcess()
	if err != nil {
		return err
	}
	ctxErr := w.watch(ctx, c)
	c.out.Close()
	w.poll(context.WithoutCancel(ctx))
	w.res.ExitCode = exitCode(c.waitErr)
	if ctxErr != nil {
		return fmt.Errorf("update_synapse_database: %w", ctxErr)
	}
	return nil
}

// child is the running update_synapse_database.
type child struct {
	cmd *exec.Cmd
	// out is the read end of its output; lines come from it, one by one,
	// until it ends (closed then).
	out   *os.File
	lines chan line
	// exited receives Wait's error; waiting is true until then.
	exited  chan error
	waiting bool
	waitErr error
	// stopping is set once SIGTERM was sent; killAt is when SIGKILL
	// follows.
	stopping bool
	killAt   time.Time
}

// startProcess starts update_synapse_database, its output read line by line.
func (w *watcher) startProcess() (*child, error) {
	args := []string{"-m", Module, "--database-config", w.opts.Config}
	if w.opts.RunBackgroundUpdates {
		args = append(args, "--run-background-updates")
	}
	if w.opts.Verbose {
		args = append(args, "-v")
	}
	cmd := exec.Command(w.opts.Python, args...)
	cmd.Dir = w.opts.Dir
	cmd.Env = append(os.Environ(), w.opts.Env...)
	// Its own process group (a wrapper's children are stopped with it),
	// and killed if this process dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	w.start = time.Now()
	if err := cmd.Start(); err != nil {
		pr.Close()
		pw.Close()
		return nil, fmt.Errorf("%w: start %s: %v", ErrNoSynapse, w.opts.Python, err)
	}
	pw.Close()
	c := &child{cmd: cmd, out: pr, lines: make(chan line, 256), exited: make(chan error, 1), waiting: true}
	go func() {
		defer close(c.lines)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
		for sc.Scan() {
			c.lines <- line{text: sc.Text(), at: time.Now()}
		}
	}()
	go func() { c.exited <- cmd.Wait() }()
	return c, nil
}

// stop sends SIGTERM to the process group, once; SIGKILL follows after
// the stop timeout.
func (w *watcher) stop(c *child, why string) {
	if c.stopping {
		return
	}
	c.stopping = true
	w.emit(Event{Type: "stopping", Error: why})
	_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGTERM)
	c.killAt = time.Now().Add(w.opts.StopTimeout)
}

// watch follows the process until it exited and its output is read: each
// line as it comes, the queues at every poll. An interrupt stops the
// process and is returned.
func (w *watcher) watch(ctx context.Context, c *child) (ctxErr error) {
	// After the exit, the rest of the output is read; a child that
	// inherited the pipe and lives on must not hold the run open.
	var drain <-chan time.Time
	tick := time.NewTicker(w.opts.Poll)
	defer tick.Stop()
	for c.waiting || c.lines != nil {
		select {
		case l, ok := <-c.lines:
			if !ok {
				c.lines = nil
				continue
			}
			w.line(l)
		case err := <-c.exited:
			c.waitErr, c.waiting = err, false
			w.end = time.Now()
			drain = time.After(2 * time.Second)
		case <-drain:
			c.out.Close()
		case <-tick.C:
			if c.waiting {
				w.tick(ctx, c)
			}
		case <-ctx.Done():
			if ctxErr == nil {
				ctxErr = ctx.Err()
				w.stop(c, "interrupted")
			}
			ctx = context.WithoutCancel(ctx)
		}
	}
	return ctxErr
}

// tick reads the output so far, polls the queues, stops a Synapse that
// gave up its background updates but keeps running, and kills a process
// that outlived its stop timeout.
func (w *watcher) tick(ctx context.Context, c *child) {
	// The output read so far comes first: a batch logged before its
	// update's row was seen gone belongs to that update.
	for more := c.lines != nil; more; {
		select {
		case l, ok := <-c.lines:
			if !ok {
				c.lines, more = nil, false
				continue
			}
			w.line(l)
		default:
			more = false
		}
	}
	w.poll(ctx)
	if !w.aborted.IsZero() && !c.stopping && time.Since(w.aborted) >= w.opts.AbortGrace {
		// Synapse gave up its background updates but keeps running: stop
		// it once the queue is seen not to move.
		if snap := w.snapshot(ctx); snap == w.abortSnap {
			w.res.Stopped = true
			w.stop(c, "Synapse aborted its background updates and keeps running")
		} else {
			w.abortSnap = snap
			w.aborted = time.Now()
		}
	}
	if c.stopping && time.Now().After(c.killAt) {
		_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
		c.killAt = time.Now().Add(time.Hour)
	}
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if st, ok := ee.Sys().(syscall.WaitStatus); ok && st.Signaled() {
			return 128 + int(st.Signal())
		}
		return ee.ExitCode()
	}
	return -1
}

// line handles one output line.
func (w *watcher) line(l line) {
	w.tail = append(w.tail, l.text)
	if len(w.tail) > tailLines {
		w.tail = w.tail[len(w.tail)-tailLines:]
	}
	if w.opts.Log != nil {
		fmt.Fprintln(w.opts.Log, l.text)
	}
	text := l.text
	record := isRecord(text)
	if record {
		w.inErr = false
	} else if w.inErr {
		w.errRecord = append(w.errRecord, text)
	}
	switch {
	case reApplying.MatchString(text) || reRunningPy.MatchString(text):
		m := reApplying.FindStringSubmatch(text)
		if m == nil {
			m = reRunningPy.FindStringSubmatch(text)
		}
		key := m[1]
		if _, seen := w.deltaStart[key]; !seen {
			w.closeDelta(l.at)
			w.deltaStart[key] = l.at
			w.deltaOrder = append(w.deltaOrder, key)
			w.lastDelta = key
			w.emit(Event{Type: "delta", Delta: key})
		}
	case reSchemaDone.MatchString(text):
		w.closeDelta(l.at)
		w.schemaEnd = l.at
		w.emit(Event{Type: "schema_done", Millis: l.at.Sub(w.start).Milliseconds()})
	case reBgStart.MatchString(text):
		if w.bgStart.IsZero() {
			w.bgStart = l.at
			w.lastEnd = l.at
			if w.schemaEnd.IsZero() {
				w.schemaEnd = l.at
			}
		}
	case reBatchStart.MatchString(text):
		w.startUpdate(reBatchStart.FindStringSubmatch(text)[1], l.at)
	case reBatchDone.MatchString(text):
		m := reBatchDone.FindStringSubmatch(text)
		u := w.startUpdate(m[1], l.at)
		n, _ := strconv.ParseInt(m[2], 10, 64)
		u.Batches++
		u.Items += n
		w.res.Batches++
		w.emit(Event{Type: "update_batch", Database: u.Database, Update: u.Name, Items: n})
	case reUpdateError.MatchString(text) && record:
		m := reUpdateError.FindStringSubmatch(text)
		u := w.running()
		w.errRecord = []string{text}
		w.inErr = true
		w.errUpdate = u
		if u != nil {
			u.Failures++
			u.Error = m[1]
			w.emit(Event{Type: "update_error", Database: u.Database, Update: u.Name, Error: m[1]})
		}
	case reNoMore.MatchString(text):
		for label, u := range w.current {
			w.doneUpdate(label, u.Name, l.at)
		}
		w.poll(context.Background())
	}
	if reAbort.MatchString(text) && w.aborted.IsZero() {
		w.aborted = l.at
		w.abortSnap = w.snapshot(context.Background())
		name := ""
		if w.errUpdate != nil {
			name = w.errUpdate.Name
		}
		w.emit(Event{Type: "aborted", Update: name, Error: w.cause()})
	}
}

// closeDelta ends the timing of the delta running at t.
func (w *watcher) closeDelta(t time.Time) {
	if w.lastDelta == "" {
		return
	}
	w.deltaStart[w.lastDelta+"\x00end"] = t
	w.lastDelta = ""
}

// startUpdate returns the update of that name, starting it if it is new.
func (w *watcher) startUpdate(name string, at time.Time) *Update {
	for _, u := range w.current {
		if u.Name == name {
			return u
		}
	}
	// A line read after a poll saw the update's row go belongs to that
	// update (the output and the queue are read apart): it is not a new one.
	for _, u := range w.updates {
		if u.Name == name && u.Done {
			return u
		}
	}
	label := w.databaseOf(name)
	if prev := w.current[label]; prev != nil && prev.Name != name {
		// Synapse moves to another update only once the current one has
		// ended (its row deleted), even if no poll saw the row go.
		w.doneUpdate(label, prev.Name, at)
	}
	started := at
	if !w.lastEnd.IsZero() && w.lastEnd.Before(at) {
		started = w.lastEnd
	}
	u := &Update{Database: label, Name: name, started: started}
	w.current[label] = u
	w.updates = append(w.updates, u)
	w.emit(Event{Type: "update_start", Database: label, Update: name, Progress: w.progress[label][name]})
	return u
}

// running is the update the last batch line named, or the one the
// scheduler picks next (for an update that failed before any line).
func (w *watcher) running() *Update {
	var latest *Update
	for _, u := range w.current {
		if latest == nil || u.started.After(latest.started) {
			latest = u
		}
	}
	if latest != nil {
		return latest
	}
	for _, d := range w.opts.Databases {
		us, err := schema.ReadUpdates(context.Background(), d)
		if err != nil || len(us) == 0 {
			continue
		}
		if next, err := schema.Next(us); err == nil {
			return w.startUpdate(next.Name, time.Now())
		}
	}
	return nil
}

// databaseOf is the label of the database whose queue holds name.
func (w *watcher) databaseOf(name string) string {
	for label, p := range w.progress {
		if _, ok := p[name]; ok {
			return label
		}
	}
	if len(w.opts.Databases) > 0 {
		return w.opts.Databases[0].Label
	}
	return ""
}

// poll reads each database's queue: an update whose row is gone is done.
func (w *watcher) poll(ctx context.Context) {
	for _, d := range w.opts.Databases {
		us, err := schema.ReadUpdates(ctx, d)
		if err != nil {
			continue // busy: next time
		}
		now := progressOf(us)
		before := w.progress[d.Label]
		for name, p := range now {
			if old, ok := before[name]; ok && old != p {
				u := w.startUpdate(name, time.Now())
				w.emit(Event{Type: "update_progress", Database: d.Label, Update: name, Progress: p, Items: u.Items})
			}
		}
		for name := range before {
			if _, still := now[name]; still {
				continue
			}
			w.doneUpdate(d.Label, name, time.Now())
		}
		w.progress[d.Label] = now
	}
}

// doneUpdate records an update's end.
func (w *watcher) doneUpdate(label, name string, at time.Time) {
	var u *Update
	for _, x := range w.updates {
		if x.Name == name && x.Database == label {
			u = x
		}
	}
	if u == nil {
		// Finished between two polls without a log line: it took at most
		// the time since the previous end.
		started := w.lastEnd
		if started.IsZero() {
			started = w.bgStartOr(at)
		}
		u = &Update{Database: label, Name: name, started: started}
		w.updates = append(w.updates, u)
	}
	if u.Done {
		return
	}
	u.Done = true
	u.Error = ""
	u.Millis = at.Sub(u.started).Milliseconds()
	if w.current[label] == u {
		delete(w.current, label)
	}
	w.lastEnd = at
	w.emit(Event{Type: "update_done", Database: label, Update: name, Millis: u.Millis, Items: u.Items})
}

func (w *watcher) bgStartOr(t time.Time) time.Time {
	if !w.bgStart.IsZero() {
		return w.bgStart
	}
	return t
}

// snapshot renders every queue, to tell whether it moved.
func (w *watcher) snapshot(ctx context.Context) string {
	s := ""
	for _, d := range w.opts.Databases {
		us, err := schema.ReadUpdates(ctx, d)
		if err != nil {
			return "unreadable " + err.Error()
		}
		for _, u := range us {
			s += u.Name + "=" + u.Progress + ";"
		}
	}
	return s
}

// cause is the error behind the last failed update attempt: the exception
// its traceback ends with, else the log message's text.
func (w *watcher) cause() string {
	if e := exceptionOf(w.errRecord); e != "" {
		return e
	}
	if w.errUpdate != nil {
		return w.errUpdate.Error
	}
	return ""
}

// finish works out the deltas, phases and failure once the process ended
// and the states after are read.
func (w *watcher) finish() {
	r := &w.res
	r.Tail = w.tail
	w.phases()
	everywhere := w.deltas()
	failedDelta, failedDB := w.failedDelta(everywhere)
	w.endUpdates()
	for _, u := range w.updates {
		r.Updates = append(r.Updates, *u)
	}
	r.Failure = w.failure(failedDelta, failedDB)
	if f := r.Failure; f != nil {
		f.Fix = FixFor(f)
		for i := range r.Updates {
			if r.Updates[i].Name == f.Update && !r.Updates[i].Done && f.Cause != "" {
				r.Updates[i].Error = f.Cause
			}
		}
	}
}

// phases times the run, its blocking phase and its background phase
// (which ends when Synapse aborted its updates, if it did).
func (w *watcher) phases() {
	r := &w.res
	r.Millis = w.end.Sub(w.start).Milliseconds()
	if w.schemaEnd.IsZero() {
		w.schemaEnd = w.end
	}
	r.SchemaMillis = w.schemaEnd.Sub(w.start).Milliseconds()
	if !w.bgStart.IsZero() {
		r.BackgroundMillis = w.end.Sub(w.bgStart).Milliseconds()
		if !w.aborted.IsZero() {
			r.BackgroundMillis = w.aborted.Sub(w.bgStart).Milliseconds()
		}
	}
}

// deltas lists the deltas applied: what applied_schema_deltas gained, in
// log order, then any the log did not name. It returns every delta
// recorded before or after, in any database.
func (w *watcher) deltas() (everywhere map[string]bool) {
	r := &w.res
	everywhere = map[string]bool{}
	for i, after := range r.After {
		var before []string
		if i < len(r.Before) {
			before = r.Before[i].Applied
		}
		for _, k := range before {
			everywhere[k] = true
		}
		gained := map[string]bool{}
		for _, k := range after.Applied {
			everywhere[k] = true
			if !slices.Contains(before, k) {
				gained[k] = true
			}
		}
		for _, k := range w.deltaOrder {
			if gained[k] {
				r.Deltas = append(r.Deltas, Delta{Database: after.Label, Key: k, Millis: w.deltaMillis(k), Applied: true})
				delete(gained, k)
			}
		}
		rest := make([]string, 0, len(gained))
		for k := range gained {
			rest = append(rest, k)
		}
		slices.Sort(rest)
		for _, k := range rest {
			r.Deltas = append(r.Deltas, Delta{Database: after.Label, Key: k, Millis: -1, Applied: true})
		}
	}
	return everywhere
}

// failedDelta is the delta that was running when the process died in the
// schema phase, not recorded anywhere: its file and its bookkeeping row
// are rolled back together. Its database is named when there is one.
func (w *watcher) failedDelta(everywhere map[string]bool) (key, database string) {
	r := &w.res
	n := len(w.deltaOrder)
	if n == 0 || r.ExitCode == 0 || r.Stopped || !w.bgStart.IsZero() || everywhere[w.deltaOrder[n-1]] {
		return "", ""
	}
	if len(r.After) == 1 {
		database = r.After[0].Label
	}
	return w.deltaOrder[n-1], database
}

// endUpdates ends the updates whose row is gone, even if the process
// exited before a poll saw it go.
func (w *watcher) endUpdates() {
	pending := map[string]bool{}
	for _, st := range w.res.After {
		for _, u := range st.Pending {
			pending[st.Label+"\x00"+u.Name] = true
		}
	}
	for _, u := range w.updates {
		if !u.Done && !pending[u.Database+"\x00"+u.Name] {
			w.doneUpdate(u.Database, u.Name, w.end)
		}
	}
}

// failure is the run's failure, or nil: the process said so (exit
// status), or Synapse aborted its updates (it may even exit 0 once
// stopped), or updates are left that it was to run.
func (w *watcher) failure(failedDelta, failedDB string) *Failure {
	r := &w.res
	switch {
	case failedDelta != "":
		r.Deltas = append(r.Deltas, Delta{Database: failedDB, Key: failedDelta, Millis: w.deltaMillis(failedDelta)})
		return &Failure{Phase: "schema", Database: failedDB, Delta: failedDelta, Cause: exceptionOf(w.tail), ExitCode: r.ExitCode}
	case !w.aborted.IsZero():
		f := &Failure{Phase: "background", Cause: w.cause(), ExitCode: r.ExitCode, Stopped: r.Stopped}
		if w.errUpdate != nil {
			f.Update, f.Database = w.errUpdate.Name, w.errUpdate.Database
		}
		return f
	case r.ExitCode != 0:
		f := &Failure{Phase: "schema", Cause: exceptionOf(w.tail), ExitCode: r.ExitCode}
		if !w.bgStart.IsZero() {
			f.Phase = "background"
			if u := w.running(); u != nil {
				f.Update, f.Database = u.Name, u.Database
			}
		}
		if f.Cause == "" && len(w.tail) > 0 {
			f.Cause = w.tail[len(w.tail)-1]
		}
		return f
	case w.opts.RunBackgroundUpdates:
		for _, st := range r.After {
			if len(st.Pending) > 0 {
				next, _ := schema.Next(st.Pending)
				return &Failure{Phase: "background", Database: st.Label, Update: next.Name,
					Cause: fmt.Sprintf("update_synapse_database ended with %d background update(s) still pending", len(st.Pending))}
			}
		}
	}
	return nil
}

func (w *watcher) deltaMillis(key string) int64 {
	start, ok := w.deltaStart[key]
	if !ok {
		return -1
	}
	end, ok := w.deltaStart[key+"\x00end"]
	if !ok {
		end = w.end
	}
	return end.Sub(start).Milliseconds()
}

// Failure is a failed delta or background update: a classified error
// (fault.Delta or fault.Update) whose hint is the fix.
type Failure struct {
	// Phase is "schema" or "background".
	Phase    string `json:"phase"`
	Database string `json:"database,omitempty"`
	Delta    string `json:"delta,omitempty"`
	Update   string `json:"update,omitempty"`
	// Cause is the error Synapse reported.
	Cause string `json:"cause"`
	// Fix is what to do about it.
	Fix      string `json:"fix"`
	ExitCode int    `json:"exit_code"`
	// Stopped is true when Synapse hung after aborting and was stopped.
	Stopped bool `json:"stopped,omitempty"`
}

func (f *Failure) Error() string {
	what := "update_synapse_database failed"
	switch {
	case f.Delta != "":
		what = fmt.Sprintf("schema delta %s failed", f.Delta)
	case f.Update != "":
		what = fmt.Sprintf("background update %q failed", f.Update)
	}
	if f.Stopped {
		what += " (Synapse aborted its background updates and kept running: it was stopped)"
	}
	if f.Cause != "" {
		return what + ": " + f.Cause
	}
	return what
}

// Class is fault.Delta for the schema phase, fault.Update for the
// background phase.
func (f *Failure) Class() fault.Class {
	if f.Phase == "background" {
		return fault.Update
	}
	return fault.Delta
}

// Hint is the fix.
func (f *Failure) Hint() string { return f.Fix }
