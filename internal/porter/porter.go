package porter

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"hsops/internal/config"
	"hsops/internal/db"
	"hsops/internal/fault"
	"hsops/internal/parallel"
	"hsops/internal/proc"
	"hsops/internal/releases"
	"hsops/schema"
	"hsops/schema/engine"
)

// Errors a caller maps to exit codes.
var (
	// ErrSource means the SQLite database was refused; nothing was written.
	ErrSource = fault.New(fault.Source, "source refused", "nothing was written")
	// ErrTarget means the PostgreSQL database was refused; nothing was
	// written.
	ErrTarget = fault.New(fault.Target, "target refused", "nothing was written")
	// ErrVerify means --verify found differences.
	ErrVerify = fault.New(fault.Verify, "verification found differences",
		"the differences are listed above; rows deleted from SQLite after they were ported stay in PostgreSQL")
)

// Options configure a port.
type Options struct {
	SQLitePath string
	Target     config.Database
	// ConfigPath is the target's config file as the operator named it,
	// for the commands the messages give ("" says <config>).
	ConfigPath string
	// ServerName is the target config's server_name; users of another
	// server in the source are refused, as Synapse does.
	ServerName string
	// BatchSize is the number of rows per batch of an append-only table.
	BatchSize int
	// Jobs is the number of tables copied at once.
	Jobs   int
	Verify bool
	DryRun bool
	// AllowInUse skips the check that no other process has the source open.
	AllowInUse bool
	Progress   func(Event)

	// What a switch's final port sets, so that its cost follows what moved
	// (see final.go for each one's argument):
	//
	// PagesChecked: the caller checked every page of this database a
	// short while ago (a switch's pre-copy ran quick_check on a snapshot of
	// it): the whole-file check is not run again, and the pages this run
	// reads are checked as SQLite reads them.
	PagesChecked bool
	// KeepUnchanged: a re-copied table with the same rows on both sides
	// (row count and content checksum) is kept as it is, not emptied and
	// copied again.
	KeepUnchanged bool
	// EstimateAlready: the rows earlier runs ported are taken from
	// PostgreSQL's statistics (pg_class.reltuples), not counted (a count
	// reads the whole table); they only feed progress.
	EstimateAlready bool
	// VerifyMoved verifies what this run copied (not every table whole, as
	// Verify does): MovedCounts compares row counts, MovedChecksums counts
	// and content checksums.
	VerifyMoved MovedCheck

	// deferMin is the fewest rows a table loaded from empty must receive
	// for its indexes and foreign keys to be dropped for the copy (0:
	// deferMinRows); tests lower it.
	deferMin int64
	// noFreeze and syncCommit turn off COPY FREEZE and synchronous_commit
	// = off, so that a benchmark can measure what each is worth.
	noFreeze, syncCommit bool
}

// deferMinRows: a table receiving fewer rows keeps its indexes through its
// copy. Measured on events (7 indexes): at 1,000 rows keeping them costs
// PostgreSQL half what building them again does, from about 5,000 rows on
// building them after wins; below 10,000 rows either way is a matter of
// milliseconds, not worth a drop, a record and a rebuild per object.
const deferMinRows = 10000

// Event reports progress.
type Event struct {
	// Type is "state", "plan" (before the copy: the rows already ported
	// and the total, over every table), "pending" (the same for one table),
	// "table" (a table's copy begins), "batch", "table_done", "rebuild" (an
	// index or constraint dropped for the copy is being put back: Message
	// names it), "rebuilt" (it is back: Done of Total), "warning" or "note".
	Type    string `json:"event"`
	State   string `json:"state,omitempty"`
	Table   string `json:"table,omitempty"`
	Rows    int64  `json:"rows,omitempty"`
	Done    int64  `json:"done,omitempty"`
	Total   int64  `json:"total,omitempty"`
	Bytes   int64  `json:"bytes,omitempty"`
	Message string `json:"message,omitempty"`
}

// TableResult is what happened to one table.
type TableResult struct {
	Name     string   `json:"table"`
	Strategy Strategy `json:"strategy"`
	// Already is the rows ported by earlier runs; Copied the rows copied by
	// this one (for a dry run: the rows it would copy).
	Already  int64         `json:"already_ported"`
	Copied   int64         `json:"copied"`
	Bytes    int64         `json:"bytes"`
	Duration time.Duration `json:"-"`
	Millis   int64         `json:"ms"`
	NUL      int64         `json:"nul_replaced,omitempty"`
	BadUTF8  int64         `json:"invalid_utf8_replaced,omitempty"`
	Skipped  int64         `json:"skipped,omitempty"`
	// Kept: a re-copied table found the same on both sides and left as it
	// was (Options.KeepUnchanged).
	Kept   bool          `json:"kept,omitempty"`
	Verify *VerifyResult `json:"verify,omitempty"`
}

// SequenceChange is a sequence the porter moved.
type SequenceChange struct {
	Name string `json:"sequence"`
	From int64  `json:"from"`
	To   int64  `json:"to"`
}

// Result is a port's outcome.
type Result struct {
	Source        string           `json:"source"`
	Target        string           `json:"target"`
	Mode          string           `json:"mode"`
	SchemaVersion int              `json:"schema_version"`
	CreatedSchema bool             `json:"created_schema"`
	Resumed       bool             `json:"resumed"`
	DryRun        bool             `json:"dry_run"`
	Tables        []TableResult    `json:"tables"`
	Sequences     []SequenceChange `json:"sequences"`
	Rows          int64            `json:"rows"`
	Bytes         int64            `json:"bytes"`
	Duration      time.Duration    `json:"-"`
	Millis        int64            `json:"ms"`
	Notes         []string         `json:"notes,omitempty"`
	VerifyFailed  bool             `json:"verify_failed,omitempty"`
	// Rebuilt counts the indexes and constraints dropped for the copy and
	// put back; RebuildMillis is their build time added up (several are
	// built at once, and during other tables' copies).
	Rebuilt       int   `json:"rebuilt"`
	RebuildMillis int64 `json:"rebuild_ms"`
	// Phases is where the run's time went, in order.
	Phases []Phase `json:"phases,omitempty"`
	// InProgress is set when the target's port is still unfinished at the
	// end (a dry run, or a verification that found it so).
	InProgress string `json:"in_progress,omitempty"`
	// PageCheck is how the source's pages were checked: "quick_check"
	// (every table and index), or "as read" (Options.PagesChecked).
	PageCheck string `json:"page_check"`
	// Steps split the checks phase: "inspect" (both databases opened and
	// checked, the tables matched, a resumed port's fingerprints), then, at
	// once, "integrity check" (the quick_check of every table) and "count"
	// (what is left to copy; it includes "compare", the re-copied tables
	// summed on both sides with KeepUnchanged), then "prepare target" (the
	// transaction that readies it).
	Steps []Phase `json:"steps,omitempty"`
	// Verified is what the verification covered: "every table" (Verify),
	// "moved rows" (VerifyMoved), or "" (none).
	Verified string `json:"verified,omitempty"`
}

// Phase is a part of a run and its wall-clock time.
type Phase struct {
	// Name is "checks" (both databases checked, the source's pages read
	// and its rows counted, the target prepared: these overlap),
	// "sequences" (before and after the copy), "copy" (until the last
	// table is copied; index builds of tables already copied run
	// meanwhile), "index rebuild" (from the last copy to the last index or
	// constraint put back) or "verify".
	Name   string `json:"phase"`
	Millis int64  `json:"ms"`
}

// porter is one run.
type porter struct {
	opts   Options
	src    *db.DB
	tgt    *db.DB
	srcSt  *schema.State
	tgtSt  *schema.State
	mode   string
	tables []*Table
	srcAll map[string]string
	res    *Result
	mu     sync.Mutex
	// deferred is what the load puts back: dropped for this run's copy or
	// by an earlier run.
	deferred []deferredObject
	phases   map[string]time.Duration
	// moved is where the copy began, for VerifyMoved.
	moved *movedMark
}

func (p *porter) phase(name string, d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.phases == nil {
		p.phases = map[string]time.Duration{}
	}
	if _, ok := p.phases[name]; !ok {
		p.res.Phases = append(p.res.Phases, Phase{Name: name})
	}
	p.phases[name] += d
	for i := range p.res.Phases {
		p.res.Phases[i].Millis = p.phases[p.res.Phases[i].Name].Milliseconds()
	}
}

// timed runs fn and adds its time to a phase.
func (p *porter) timed(name string, fn func() error) error {
	t0 := time.Now()
	err := fn()
	p.phase(name, time.Since(t0))
	return err
}

func (p *porter) emit(ev Event) {
	if p.opts.Progress != nil {
		p.mu.Lock()
		p.opts.Progress(ev)
		p.mu.Unlock()
	}
}

func (p *porter) state(s string) { p.emit(Event{Type: "state", State: s}) }

func (p *porter) note(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	p.mu.Lock()
	p.res.Notes = append(p.res.Notes, msg)
	p.mu.Unlock()
	p.emit(Event{Type: "note", Message: msg})
}

func sourceErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrSource, fmt.Sprintf(format, args...))
}

func targetErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrTarget, fmt.Sprintf(format, args...))
}

// Run ports the SQLite database into PostgreSQL (or, with DryRun, reports
// what it would do without writing anything).
//
// The run: both databases checked (nothing written); then, at once, the
// source's every page read (PRAGMA quick_check), its rows counted, and the
// target prepared in one transaction that commits only once the source
// passed (bookkeeping, the tables copied again emptied, and, for every table
// loaded from empty, its indexes and foreign keys dropped and recorded);
// sequences; the load (tables copied in foreign-key order, each table's
// indexes and keys put back as soon as it is copied, up to Jobs tasks at
// once); sequences again; verification.
func Run(ctx context.Context, opts Options) (_ *Result, err error) {
	defer func() {
		// Whatever else fails during a port is Synapse's exit 5.
		if err != nil && fault.ClassOf(err) == fault.Internal {
			err = fault.Wrap(fault.PortFailed, err, "what was committed is kept: fix the cause and run the same command again to continue")
		}
	}()
	t0 := time.Now()
	p := &porter{opts: opts.withDefaults(), res: &Result{DryRun: opts.DryRun}}
	defer p.close()
	var lock *schema.Lock
	defer func() { lock.Release() }()
	if err := p.timed("checks", func() error { return p.checks(ctx, &lock) }); err != nil {
		return nil, err
	}
	if opts.DryRun {
		if err := p.dryRun(ctx); err != nil {
			return nil, err
		}
		p.finish(t0)
		return p.res, nil
	}
	if err := p.sequences(ctx); err != nil {
		return p.res, err
	}
	if err := p.markMoved(ctx); err != nil {
		return p.res, err
	}
	if err := p.load(ctx); err != nil {
		p.finish(t0)
		return p.res, err
	}
	if err := p.sequences(ctx); err != nil {
		return p.res, err
	}
	if err := p.verifyPhase(ctx); err != nil {
		return p.res, err
	}
	if _, err := p.tgt.ExecContext(ctx, "UPDATE hsops_port SET completed_ts = $1, updated_ts = $1", time.Now().UnixMilli()); err != nil {
		return p.res, err
	}
	p.finish(t0)
	if p.res.VerifyFailed {
		return p.res, fmt.Errorf("%w: see the summary", ErrVerify)
	}
	return p.res, nil
}

// withDefaults fills the options left at zero.
func (o Options) withDefaults() Options {
	if o.BatchSize <= 0 {
		o.BatchSize = 10000
	}
	if o.Jobs <= 0 {
		o.Jobs = 1
	}
	if o.deferMin <= 0 {
		o.deferMin = deferMinRows
	}
	return o
}

// checks opens and inspects both databases and, but for a dry run, takes
// the target's schema lock (into *lock) and checks and prepares both.
func (p *porter) checks(ctx context.Context, lock **schema.Lock) error {
	t0 := time.Now()
	if err := p.prepare(ctx); err != nil {
		return err
	}
	p.step("inspect", time.Since(t0))
	if p.opts.DryRun {
		return p.checkAndCount(ctx, nil)
	}
	// One writer at a time: the schema lock keeps update_database, a
	// starting homeserver and another port_db off the target until the
	// port is done, and names this run to them.
	var err error
	if *lock, err = schema.AcquireLock(ctx, p.tgt, "port_db"); err != nil {
		return err
	}
	return p.checkAndPrepare(ctx)
}

// sequences sets the target's sequences (before and after the copy).
func (p *porter) sequences(ctx context.Context) error {
	return p.timed("sequences", func() error {
		p.state("Setting up sequence generators")
		return p.setSequences(ctx)
	})
}

// verifyPhase compares what was asked: every table (Verify), what moved
// (VerifyMoved), or nothing.
func (p *porter) verifyPhase(ctx context.Context) error {
	switch {
	case p.opts.Verify:
		return p.timed("verify", func() error {
			p.state("Verifying")
			p.res.Verified = "every table"
			return p.verify(ctx)
		})
	case p.opts.VerifyMoved != NoMovedCheck:
		return p.timed("verify", func() error {
			p.state("Verifying what moved")
			p.res.Verified = "moved rows"
			return p.verifyMoved(ctx)
		})
	}
	return nil
}

// load copies the tables and puts back what was dropped for the copy.
func (p *porter) load(ctx context.Context) error {
	p.state("Copying to postgres")
	l := &load{jobs: p.opts.Jobs, session: p.withConn, copy: p.copyTable, record: true, emit: p.emit}
	start := time.Now()
	stats, err := l.run(ctx, p.tables, p.deferred)
	end := time.Now()
	// The copy ends with the last table that had rows to copy (a resumed
	// port may have none: it only rebuilds).
	copyEnd := stats.CopyEnd
	if copyEnd.IsZero() {
		copyEnd = start
	}
	p.phase("copy", copyEnd.Sub(start))
	p.phase("index rebuild", end.Sub(copyEnd))
	p.res.Rebuilt = stats.Rebuilt
	p.res.RebuildMillis = stats.RebuildTime.Milliseconds()
	return err
}

func (p *porter) finish(t0 time.Time) {
	p.res.Duration = time.Since(t0)
	p.res.Millis = p.res.Duration.Milliseconds()
	p.res.Rows, p.res.Bytes = 0, 0
	for _, t := range p.res.Tables {
		p.res.Rows += t.Copied
		p.res.Bytes += t.Bytes
	}
}

func (p *porter) close() {
	if p.src != nil {
		p.src.Close()
	}
	if p.tgt != nil {
		p.tgt.Close()
	}
}

// prepare opens both sides and runs every check. It writes nothing.
func (p *porter) prepare(ctx context.Context) error {
	o := p.opts
	p.state("Preparing sqlite3")
	st, err := os.Stat(o.SQLitePath)
	if err != nil || st.IsDir() {
		return fmt.Errorf("%w: %q", db.ErrNotFound, o.SQLitePath)
	}
	p.src, err = db.OpenSQLite(ctx, o.SQLitePath, db.Options{ReadOnly: true, MaxConns: o.Jobs + 2})
	if err != nil {
		return err
	}
	p.res.Source = p.src.Desc
	if p.srcSt, err = schema.ReadState(ctx, p.src, p.src.DB); err != nil {
		return sourceErr("read its bookkeeping: %v", err)
	}
	switch p.srcSt.Kind {
	case schema.KindEmpty:
		return sourceErr("%s is empty: there is nothing to port", p.src.Desc)
	case schema.KindUnknown:
		return sourceErr("%s is not a homeserver database (no schema_version)", p.src.Desc)
	case schema.KindEngine:
		p.mode = "engine"
	default:
		p.mode = "synapse"
	}
	if set := engine.Schema(); p.srcSt.Version > set.Version {
		e := set.Newer(p.srcSt)
		e.Database = p.src.Desc
		return e
	}
	p.res.Mode = p.mode
	p.res.SchemaVersion = p.srcSt.Version
	if err := p.checkSource(ctx); err != nil {
		return err
	}

	p.state("Preparing psycopg2")
	p.tgt, err = db.Open(ctx, o.Target, db.Options{AppName: "hsops port_db", MaxConns: o.Jobs + 3})
	if err != nil {
		return err
	}
	p.res.Target = p.tgt.Desc
	if p.tgtSt, err = schema.ReadState(ctx, p.tgt, p.tgt.DB); err != nil {
		return err
	}
	if set := engine.Schema(); p.tgtSt.Version > set.Version {
		e := set.Newer(p.tgtSt)
		e.Database = p.tgt.Desc
		return e
	}
	if err := schema.Preflight(ctx, p.tgt, p.tgtSt, o.Target.AllowUnsafeLocale); err != nil {
		return err
	}
	if err := p.checkTarget(ctx); err != nil {
		return err
	}
	p.state("Fetching tables")
	if err := p.buildWorkSet(ctx); err != nil {
		return err
	}
	if p.res.Resumed {
		return p.checkResume(ctx)
	}
	return nil
}

// checkResume refuses to continue a port whose source no longer continues
// what was ported: rowids that moved (a VACUUM), a source older than what
// was ported (an older snapshot), or a target the homeserver has written
// to since (porting again would empty the tables it wrote to).
func (p *porter) checkResume(ctx context.Context) error {
	progress, err := p.readProgress(ctx)
	if err != nil {
		return err
	}
	for _, t := range p.tables {
		if t.Strategy != AppendOnly {
			continue
		}
		if pr, ok := progress[t.Name]; ok {
			if err := p.checkFingerprint(ctx, t, pr[0]); err != nil {
				return err
			}
		}
	}
	pr, ok := progress["events"]
	if !ok || (pr[0] <= 1 && pr[1] >= 0) {
		return nil
	}
	var srcMax, srcMin, tgtMax sql.NullInt64
	// Two subqueries: SQLite answers one min() or max() from the b-tree,
	// but reads the whole table for both in one SELECT.
	if err := p.src.QueryRowContext(ctx, "SELECT (SELECT max(rowid) FROM events), (SELECT min(rowid) FROM events)").Scan(&srcMax, &srcMin); err != nil {
		return err
	}
	if pr[0] > 1 && srcMax.Int64 < pr[0]-1 || pr[1] < 0 && srcMin.Int64 > pr[1]+1 {
		return sourceErr("the SQLite database is older than what was already ported: events up to stream ordering %d were ported, and its newest event is %d "+
			"(an older snapshot, or events deleted since the last run): port the newest snapshot or the live file, or port into an empty database", pr[0]-1, srcMax.Int64)
	}
	if err := p.tgt.QueryRowContext(ctx, "SELECT max(stream_ordering) FROM events").Scan(&tgtMax); err != nil {
		return err
	}
	if tgtMax.Valid && tgtMax.Int64 >= pr[0] {
		return targetErr("the homeserver has written to %s since the last port (events up to stream ordering %d, the port copied up to %d): "+
			"porting again would empty the tables it wrote to; keep running on PostgreSQL, or port into an empty database", p.tgt.Desc, tgtMax.Int64, pr[0]-1)
	}
	return nil
}

// checkSource: auto_vacuum off, no pending background updates, not in use,
// users native to the target's server name.
func (p *porter) checkSource(ctx context.Context) error {
	var av int
	if err := p.src.QueryRowContext(ctx, "PRAGMA auto_vacuum").Scan(&av); err != nil {
		return sourceErr("read auto_vacuum: %v", err)
	}
	if av != 0 {
		return sourceErr("auto_vacuum is enabled in the SQLite database (this is not the default configuration). " +
			"The port identifies the rows it already copied by their rowids, and a vacuum may renumber them between runs; " +
			"to disable auto_vacuum, stop the homeserver and run: PRAGMA auto_vacuum=off; VACUUM;")
	}
	if n := len(p.srcSt.Updates); n > 0 {
		names := make([]string, 0, n)
		for _, u := range p.srcSt.Updates {
			names = append(names, u.Name)
		}
		return sourceErr("pending background updates exist in the SQLite database (%s): start the homeserver again and wait until every update has finished before porting", strings.Join(names, ", "))
	}
	if !p.opts.AllowInUse {
		v := proc.HomeserverRunning(proc.Target{SQLite: []string{p.opts.SQLitePath}})
		if err := v.Refusal("nothing was written: stop it, or port a copy of the file (a snapshot); --allow-in-use ports it anyway"); err != nil {
			return fault.Wrap(fault.InUse, fmt.Errorf("%w: %w", ErrSource, err), fault.HintOf(err))
		}
	}
	if p.opts.ServerName != "" {
		var name string
		err := p.src.QueryRowContext(ctx, "SELECT name FROM users LIMIT 1").Scan(&name)
		if err == nil {
			if i := strings.Index(name, ":"); i >= 0 && name[i+1:] != p.opts.ServerName {
				return sourceErr("found users in the database not native to %s (for example %s): the target config's server_name must be the source's", p.opts.ServerName, name)
			}
		}
	}
	return nil
}

// readProgress reads port_from_sqlite3: table -> (forward_rowid,
// backward_rowid). A target without it has no progress.
func (p *porter) readProgress(ctx context.Context) (map[string][2]int64, error) {
	progress := map[string][2]int64{}
	if p.tgtSt.Kind == schema.KindEmpty {
		return progress, nil
	}
	if ok, err := p.tgt.TableExists(ctx, p.tgt, "port_from_sqlite3"); err != nil || !ok {
		return progress, err
	}
	rows, err := p.tgt.QueryContext(ctx, "SELECT table_name, forward_rowid, backward_rowid FROM port_from_sqlite3")
	if err != nil {
		return nil, fmt.Errorf("read the port's progress: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var name string
		var fwd, bwd int64
		if err := rows.Scan(&name, &fwd, &bwd); err != nil {
			return nil, err
		}
		progress[name] = [2]int64{fwd, bwd}
	}
	return progress, rows.Err()
}

// checkIntegrity reads every table and index of the source (PRAGMA
// quick_check of each table, with its indexes, several tables at once), so
// that a corrupt file is refused before anything is written rather than
// half-way through the copy. The free-page list, which nothing reads, is
// not checked.
func (p *porter) checkIntegrity(ctx context.Context) error {
	corrupt := func(what string) error {
		return sourceErr("the SQLite database is corrupt (%s): port a good copy, or repair it first (sqlite3 homeserver.db .recover)", what)
	}
	tables, err := p.storedTables(ctx)
	if err != nil {
		return corrupt(err.Error())
	}
	var (
		mu       sync.Mutex
		problems []string
	)
	failed := parallel.For(ctx, p.opts.Jobs, len(tables), func(ctx context.Context, i int) error {
		found, err := p.quickCheck(ctx, tables[i])
		mu.Lock()
		problems = append(problems, found...)
		mu.Unlock()
		return err
	})
	switch {
	case failed != nil && ctx.Err() != nil:
		return ctx.Err()
	case failed != nil:
		return corrupt(failed.Error())
	case len(problems) == 1:
		return corrupt(problems[0])
	case len(problems) > 1:
		return corrupt(fmt.Sprintf("%s and %d more problems", problems[0], len(problems)-1))
	}
	return nil
}

// prepareWithSynapse says how to prepare a target for a Synapse source:
// with the Synapse release that runs at the source's versions (from the
// release facts), on the operator's own config.
func (p *porter) prepareWithSynapse() string {
	cfg := p.opts.ConfigPath
	if cfg == "" {
		cfg = "<config>"
	}
	release := fmt.Sprintf("the Synapse release at schema %d", p.srcSt.Version)
	if fs := releases.Matching(p.srcSt.Version, p.srcSt.Compat); len(fs) > 0 {
		release = "Synapse " + minorSeries(fs)
		if len(fs) > 1 {
			release = "one of Synapse " + minorSeries(fs)
		}
		release += fmt.Sprintf(" (schema %d)", p.srcSt.Version)
	}
	return fmt.Sprintf("nothing was written: prepare it with %s: update_synapse_database --database-config %s, then run the same command again (or port with that release's own synapse_port_db)",
		release, cfg)
}

// minorSeries names releases by their minor series: "v1.98.x",
// "v1.96.x to v1.97.x".
func minorSeries(fs []releases.SchemaFact) string {
	minor := func(f releases.SchemaFact) string {
		return fmt.Sprintf("v%d.%d.x", f.Version.Major(), f.Version.Minor())
	}
	if len(fs) == 1 {
		return minor(fs[0])
	}
	return minor(fs[0]) + " to " + minor(fs[len(fs)-1])
}

// storedTables lists the source's tables that have pages of their own.
func (p *porter) storedTables(ctx context.Context) ([]string, error) {
	rows, err := p.src.QueryContext(ctx, "SELECT name FROM sqlite_master WHERE type = 'table' AND rootpage > 0 ORDER BY name")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var tables []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return nil, err
		}
		tables = append(tables, name)
	}
	return tables, rows.Err()
}

// quickCheck runs PRAGMA quick_check on one table and its indexes,
// returning the problems it found.
func (p *porter) quickCheck(ctx context.Context, table string) ([]string, error) {
	rows, err := p.src.QueryContext(ctx, "PRAGMA quick_check("+db.QuoteIdent(table)+")")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var problems []string
	for rows.Next() {
		var msg string
		if err := rows.Scan(&msg); err != nil {
			return problems, err
		}
		if msg != "ok" {
			problems = append(problems, msg)
		}
	}
	return problems, rows.Err()
}

// checkTarget decides whether the target can receive this source.
func (p *porter) checkTarget(ctx context.Context) error {
	src, tgt := p.srcSt, p.tgtSt
	switch tgt.Kind {
	case schema.KindEmpty:
		if p.mode == "synapse" {
			return fault.Wrap(fault.Target, targetErr("%s is empty, and the source is a Synapse database (schema %d, compat %d), whose schema hsops does not create",
				p.tgt.Desc, src.Version, src.Compat), p.prepareWithSynapse())
		}
		return nil
	case schema.KindUnknown:
		return targetErr("%s holds %d tables that are not a homeserver schema: use an empty database", p.tgt.Desc, tgt.Tables)
	}
	if (tgt.Kind == schema.KindEngine) != (p.mode == "engine") {
		if p.mode == "engine" {
			return targetErr("%s holds a Synapse schema, and the source is an hsops engine database: port into an empty database", p.tgt.Desc)
		}
		return targetErr("%s holds an hsops engine schema, and the source is a Synapse database: prepare the target with Synapse", p.tgt.Desc)
	}
	// A target left at an older version by an earlier port cannot be
	// continued: the rows it holds lack the columns added since, and the
	// fingerprints of the rows already ported no longer match.
	if tgt.Version != src.Version {
		hint := "upgrade the older one: the homeserver, update_database, or Synapse's update_synapse_database"
		if p.mode == "engine" && tgt.Version < src.Version {
			hint = "the source was upgraded since the last port: port into an empty database"
		}
		return targetErr("the target is at schema %d and the source at %d: both must be at the same version (%s)", tgt.Version, src.Version, hint)
	}
	return p.checkOwnership(ctx)
}

// checkOwnership accepts a target that is a previous port of this same
// source, or that holds no rows in its data tables.
func (p *porter) checkOwnership(ctx context.Context) error {
	hasPort, err := p.tgt.TableExists(ctx, p.tgt, "port_from_sqlite3")
	if err != nil {
		return err
	}
	hasOurs, err := p.tgt.TableExists(ctx, p.tgt, "hsops_port")
	if err != nil {
		return err
	}
	id := identity(ctx, p.src, p.srcSt)
	if hasOurs {
		var prev, prevPath string
		err := p.tgt.QueryRowContext(ctx, "SELECT source_identity, source_path FROM hsops_port").Scan(&prev, &prevPath)
		if err != nil && err != sql.ErrNoRows {
			return err
		}
		if err == nil && prev != id {
			return targetErr("%s holds a port of a different database (%s, from %s), not of this one (%s): port into an empty database, or use the same source", p.tgt.Desc, readable(prev), prevPath, readable(id))
		}
		if err == nil {
			p.res.Resumed = true
			return nil
		}
	}
	if hasPort {
		p.res.Resumed = true
		p.note("the target holds a port begun by Synapse's porter; continuing it")
		return nil
	}
	// No port bookkeeping: the data tables must be empty.
	tables, err := p.tgt.Tables(ctx, p.tgt)
	if err != nil {
		return err
	}
	// Tables with a lock column hold one row, a position that a new schema
	// fills.
	single := map[string]bool{}
	rows, err := p.tgt.QueryContext(ctx, `SELECT table_name FROM information_schema.columns
		WHERE table_schema = current_schema() AND lower(column_name) = 'lock'`)
	if err != nil {
		return err
	}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			rows.Close()
			return err
		}
		single[name] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, name := range tables {
		if never[name] || preparedRows[name] || single[name] {
			continue
		}
		var n int64
		if err := p.tgt.QueryRowContext(ctx, "SELECT count(*) FROM (SELECT 1 FROM "+db.QuoteIdent(name)+" LIMIT 1) AS x").Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return targetErr("%s already holds data (table %s is not empty) and no port of this source: port into an empty database, or one the homeserver prepared and never used", p.tgt.Desc, name)
		}
	}
	return nil
}

// preparedRows are the tables that hold rows in a schema just prepared by
// the homeserver (or by Synapse), before it served anything: bookkeeping,
// the background-update queue and stream positions.
var preparedRows = map[string]bool{
	"schema_compat_version": true, "applied_module_schemas": true, "background_updates": true,
	"federation_stream_position": true, "stream_positions": true, "user_directory_stream_pos": true,
}

// createdMillis is the creation time in an identity (Unix milliseconds).
var createdMillis = regexp.MustCompile(`created (\d{10,})`)

// readable is an identity for people: its time as a date. The identity
// itself is kept as recorded, since ports compare it.
func readable(id string) string {
	return createdMillis.ReplaceAllStringFunc(id, func(m string) string {
		ms, err := strconv.ParseInt(strings.TrimPrefix(m, "created "), 10, 64)
		if err != nil {
			return m
		}
		return "created " + time.UnixMilli(ms).UTC().Format("2006-01-02 15:04:05 UTC")
	})
}

// identity names a source database stably across its snapshots: the
// engine's mark, or the first user and first event by rowid.
func identity(ctx context.Context, d *db.DB, st *schema.State) string {
	if st.Mark != nil {
		return fmt.Sprintf("hsops engine database created %d at schema %d", st.Mark.CreatedTS, st.Mark.CreatedVersion)
	}
	var user, event sql.NullString
	_ = d.QueryRowContext(ctx, "SELECT name FROM users ORDER BY rowid LIMIT 1").Scan(&user)
	_ = d.QueryRowContext(ctx, "SELECT event_id FROM events WHERE rowid > 0 ORDER BY rowid LIMIT 1").Scan(&event)
	if !user.Valid && !event.Valid {
		return "synapse database without users or events"
	}
	return fmt.Sprintf("synapse database (first user %s, first event %s)", user.String, event.String)
}

// buildWorkSet classifies the tables present on both sides.
func (p *porter) buildWorkSet(ctx context.Context) error {
	var err error
	if p.srcAll, err = sourceTables(ctx, p.src); err != nil {
		return err
	}
	tgt, err := p.targetTables(ctx)
	if err != nil {
		return err
	}
	names := make([]string, 0, len(p.srcAll))
	for n := range p.srcAll {
		names = append(names, n)
	}
	sort.Strings(names)
	var onlySource []string
	p.tables = nil
	for _, name := range names {
		if never[name] || isDerived(name, p.srcAll) {
			continue
		}
		if !tgt.has[name] {
			if !ignored[name] {
				onlySource = append(onlySource, name)
			}
			continue
		}
		if name == "background_updates" && p.mode == "synapse" {
			// The target's queue is Synapse's: it runs it at first start.
			continue
		}
		t := &Table{Name: name, Refs: tgt.fks[name], Strategy: strategyOf(name)}
		if t.Strategy == AppendOnly || t.Strategy == Recopy {
			if tgt.empty {
				err = p.sourceColumnsIn(ctx, name, tgt.shape[name])
			} else {
				err = p.columnsOf(ctx, t)
			}
			if err != nil {
				return err
			}
		}
		p.tables = append(p.tables, t)
	}
	if len(onlySource) > 0 {
		return sourceErr("tables exist only in the SQLite database, so the two schemas differ: %s", strings.Join(onlySource, ", "))
	}
	return nil
}

// strategyOf is how a table is copied.
func strategyOf(name string) Strategy {
	switch {
	case ignored[name]:
		return Ignored
	case name == "event_search":
		return Search
	case name == "user_directory_stream_pos":
		return DirectoryPos
	case appendOnly[name]:
		return AppendOnly
	}
	return Recopy
}

// targetTablesOf is what the port copies into: the target's tables and
// their foreign keys, or, for an empty target, the tables and columns of
// the engine's schema it will get (shape).
type targetTablesOf struct {
	empty bool
	has   map[string]bool
	fks   map[string][]string
	shape map[string][]string
}

// targetTables reads the tables the port copies into. An empty target gets
// the engine's schema at the source's version: the source is judged
// against that schema, built in a scratch SQLite file, so that a source
// the schema cannot hold is refused before the target is touched.
func (p *porter) targetTables(ctx context.Context) (targetTablesOf, error) {
	out := targetTablesOf{has: map[string]bool{}, fks: map[string][]string{}}
	var err error
	if p.tgtSt.Kind == schema.KindEmpty {
		out.empty = true
		if out.shape, err = engineShape(ctx, p.srcSt.Version); err != nil {
			return out, err
		}
		for t := range out.shape {
			out.has[t] = true
		}
		return out, nil
	}
	tables, err := p.tgt.Tables(ctx, p.tgt)
	if err != nil {
		return out, err
	}
	for _, t := range tables {
		out.has[t] = true
	}
	out.fks, err = foreignKeys(ctx, p.tgt)
	return out, err
}

// engineShape is the tables of a new engine database at a schema version,
// with their columns, read from a scratch SQLite database.
func engineShape(ctx context.Context, version int) (map[string][]string, error) {
	dir, err := os.MkdirTemp("", "hsops-port-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	d, err := db.Open(ctx, config.Database{Name: config.EngineSQLite, Args: map[string]string{"database": filepath.Join(dir, "schema.db")}}, db.Options{Create: true})
	if err != nil {
		return nil, err
	}
	defer d.Close()
	if _, err := engine.Schema().Apply(ctx, d, schema.Options{Target: version}); err != nil {
		return nil, fmt.Errorf("build the engine's schema at %d: %w", version, err)
	}
	tables, err := d.Tables(ctx, d)
	if err != nil {
		return nil, err
	}
	out := map[string][]string{}
	for _, t := range tables {
		if out[t], err = d.Columns(ctx, d, t); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// sourceColumnsIn checks that every source column of a table is in want.
func (p *porter) sourceColumnsIn(ctx context.Context, table string, want []string) error {
	srcCols, err := p.src.Columns(ctx, p.src, table)
	if err != nil {
		return err
	}
	have := map[string]bool{}
	for _, c := range want {
		have[strings.ToLower(c)] = true
	}
	var missing []string
	for _, c := range srcCols {
		if !have[strings.ToLower(c)] {
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		return sourceErr("columns of %s exist only in the SQLite database: %s", table, strings.Join(missing, ", "))
	}
	return nil
}

// columnsOf reads a table's source columns and matches them to the target.
func (p *porter) columnsOf(ctx context.Context, t *Table) error {
	srcCols, err := p.src.Columns(ctx, p.src, t.Name)
	if err != nil {
		return err
	}
	tgtCols, err := targetColumns(ctx, p.tgt, t.Name)
	if err != nil {
		return err
	}
	var missing []string
	for _, c := range srcCols {
		entry, ok := tgtCols[strings.ToLower(c)]
		if !ok {
			missing = append(missing, c)
			continue
		}
		name, typ, _ := strings.Cut(entry, "\x00")
		t.Columns = append(t.Columns, Column{Name: name, Source: c, TargetType: typ, kind: kindOf(typ), bin: binEncOf(typ)})
	}
	if len(missing) > 0 {
		return sourceErr("columns of %s exist only in the SQLite database: %s", t.Name, strings.Join(missing, ", "))
	}
	return nil
}
