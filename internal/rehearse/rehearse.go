package rehearse

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/Masterminds/semver/v3"
	"github.com/jackc/pgx/v5"

	"hsops/internal/config"
	"hsops/internal/db"
	"hsops/internal/fault"
	"hsops/internal/inspect"
	"hsops/internal/releases"
	"hsops/internal/sqlitecopy"
	"hsops/internal/synapse"
	"hsops/schema"
	"hsops/schema/engine"
)

// Options describe a rehearsal.
type Options struct {
	// Config is the homeserver's config; ConfigArg how the operator named
	// it (for the commands in fixes).
	Config    *config.Config
	ConfigArg string
	// ToSchema or ToRelease is the target of an engine database's upgrade
	// (default: the engine's newest schema). For a Synapse database the
	// release is Python's; a target given must match it.
	ToSchema  int
	ToRelease string
	// Python is the interpreter of the Synapse release to rehearse.
	Python string
	// Keep keeps the upgraded copy (renamed hsops-rehearsed-... /
	// hsops_rehearsed_...) instead of dropping it.
	Keep bool
	// ScratchDir is where a SQLite copy goes (default: the database's own
	// directory).
	ScratchDir string
	// Jobs is the number of tables a PostgreSQL snapshot copy copies at
	// once (default 4).
	Jobs int
	// VerifyCopy compares a snapshot copy with the source, table by table.
	VerifyCopy bool
	// ForceSnapshot makes a PostgreSQL copy from a snapshot even when the
	// template copy could be used.
	ForceSnapshot bool
	// OnSnapshot is called with a snapshot copy's exported snapshot while
	// it is held (tests).
	OnSnapshot func(label, id string)
	// OnEvent receives progress events.
	OnEvent func(Event)
	// SynapseLog receives update_synapse_database's output as it comes.
	SynapseLog io.Writer
	// AbortGrace is how long Synapse may take to exit after aborting its
	// background updates before it is stopped (default 2 s).
	AbortGrace time.Duration
}

// Event reports progress.
type Event struct {
	// Type is "copy_start", "copy_progress", "copy_done", "phase" (Name is
	// "schema" or "background"), "delta", "update_start", "update_batch",
	// "update_done", "update_failed", or "note".
	Type     string `json:"event"`
	Database string `json:"database,omitempty"`
	Name     string `json:"name,omitempty"`
	Method   string `json:"method,omitempty"`
	Done     int64  `json:"done,omitempty"`
	Total    int64  `json:"total,omitempty"`
	Rows     int64  `json:"rows,omitempty"`
	Millis   int64  `json:"ms,omitempty"`
	Message  string `json:"message,omitempty"`
}

// Errors of the rehearsal's own.
var (
	// ErrNeedPython means a Synapse database was given without --python.
	ErrNeedPython = fault.New(fault.NotOurs, "rehearsing a Synapse database needs the Synapse release to upgrade to",
		"name that release's Python: update_database rehearse --database-config <config> --python /path/to/venv/bin/python")
	// ErrNothingToCopy means the database is empty or not a homeserver's.
	ErrNothingToCopy = fault.New(fault.NotOurs, "nothing to rehearse",
		"update_database --database-config <config> creates a new database; rehearse upgrades of existing ones")
	// ErrWorkerConfig means a worker's config was given.
	ErrWorkerConfig = fault.New(fault.Config, "this is a worker's config",
		"rehearse with the main process's config: workers never upgrade the database")
)

// inspectApp is the application_name of the session that reads the
// source's bookkeeping.
const inspectApp = "hsops update_database rehearse"

// target is what the upgrade aims at.
type target struct {
	schema  int
	release *semver.Version
}

// source is one physical database to rehearse.
type source struct {
	dbc   config.Database
	desc  string
	state *schema.State
	size  int64
	plan  *schema.Plan

	// the copy
	scratch string
	dir     string // SQLite scratch directory
	lock    *sqliteLock
	maint   *pgx.Conn
	copy    *db.DB
	rep     *DatabaseReport
}

// rehearsal is one run.
type rehearsal struct {
	o       Options
	report  *Report
	sources []*source
	release *synapse.Release
	target  target
}

func (r *rehearsal) emit(ev Event) {
	if r.o.OnEvent != nil {
		r.o.OnEvent(ev)
	}
}

func (r *rehearsal) note(s string) {
	r.report.Notes = append(r.report.Notes, s)
	r.emit(Event{Type: "note", Message: s})
}

// Run rehearses the upgrade on a copy. It returns the report and, when the
// upgrade failed on the copy, a *Failure (class fault.Blockers); other
// errors (the copy cannot be made, a bad target ...) come with a nil
// report. The original database is only read; the copy is dropped unless
// Keep, also when the rehearsal fails or is interrupted.
func Run(ctx context.Context, o Options) (*Report, error) {
	t0 := time.Now()
	cfg := o.Config
	if cfg.IsWorker() {
		return nil, ErrWorkerConfig
	}
	if len(cfg.Databases) == 0 {
		return nil, config.ErrNoDatabase
	}
	if o.ToSchema != 0 && o.ToRelease != "" {
		return nil, fault.Usagef("--to-schema and --to-release cannot be used together")
	}
	r := &rehearsal{o: o, report: &Report{}}
	for _, dbc := range cfg.Databases {
		s, err := inspectSource(ctx, dbc)
		if err != nil {
			return nil, err
		}
		r.sources = append(r.sources, s)
	}
	if err := r.plan(ctx); err != nil {
		return nil, err
	}
	if r.report.Nothing != "" {
		r.report.Passed = true
		r.report.Millis = time.Since(t0).Milliseconds()
		return r.report, nil
	}
	defer r.dropCopies()
	if err := r.prepare(ctx); err != nil {
		return nil, err
	}
	if err := r.copyAll(ctx); err != nil {
		return nil, copyFailed(err)
	}
	before := map[*source]map[string]int64{}
	for _, s := range r.sources {
		n, err := countRows(ctx, s.copy)
		if err != nil {
			return nil, err
		}
		before[s] = n
	}
	var err error
	if r.report.Kind == "synapse" {
		err = r.upgradeSynapse(ctx)
	} else {
		err = r.upgradeEngine(ctx)
	}
	if err != nil {
		return nil, err
	}
	for _, s := range r.sources {
		after, err := countRows(ctx, s.copy)
		if err != nil {
			return nil, err
		}
		s.rep.Tables = tableCounts(before[s], after)
		if err := r.check(ctx, s); err != nil {
			return nil, err
		}
	}
	if err := r.finish(ctx); err != nil {
		return nil, err
	}
	r.report.Millis = time.Since(t0).Milliseconds()
	r.report.Passed = r.report.Failure == nil
	if r.report.Failure != nil {
		return r.report, r.report.Failure
	}
	return r.report, nil
}

// inspectSource reads a database's bookkeeping without writing anything.
func inspectSource(ctx context.Context, dbc config.Database) (*source, error) {
	s := &source{dbc: dbc}
	var d *db.DB
	if dbc.IsSQLite() {
		path := dbc.SQLitePath()
		sdb, err := sqlitecopy.OpenReadOnly(ctx, path)
		if err != nil {
			return nil, err
		}
		d = &db.DB{DB: sdb, Engine: db.SQLite, Path: path, Label: dbc.Label, DataStores: dbc.DataStores,
			Desc: fmt.Sprintf("SQLite database %q", path)}
		s.size = sqlitecopy.Size(path)
	} else {
		var err error
		d, err = db.Open(ctx, dbc, db.Options{ReadOnly: true, AppName: inspectApp, MaxConns: 1})
		if err != nil {
			return nil, err
		}
		if err := d.QueryRowContext(ctx, "SELECT pg_database_size(current_database())").Scan(&s.size); err != nil {
			d.Close()
			return nil, fault.Wrap(fault.Database, fmt.Errorf("read the size of %s: %w", d.Desc, err), "")
		}
	}
	defer d.Close()
	s.desc = d.Desc
	st, err := schema.ReadState(ctx, d, d)
	if err != nil {
		return nil, err
	}
	if err := schema.Preflight(ctx, d, st, dbc.AllowUnsafeLocale); err != nil {
		return nil, err
	}
	s.state = st
	return s, nil
}

// plan decides the kind of rehearsal and its target, and refuses what
// cannot be rehearsed, before anything is copied.
func (r *rehearsal) plan(ctx context.Context) error {
	kinds := map[schema.Kind]bool{}
	for _, s := range r.sources {
		kinds[s.state.Kind] = true
		if s.state.Kind == schema.KindEmpty || s.state.Kind == schema.KindUnknown {
			what := "it is empty"
			if s.state.Kind == schema.KindUnknown {
				what = fmt.Sprintf("it has %d tables but no homeserver bookkeeping", s.state.Tables)
			}
			return fmt.Errorf("%w: %s: %s", ErrNothingToCopy, s.desc, what)
		}
	}
	if len(kinds) > 1 {
		return fault.Errorf(fault.NotOurs, "rehearse the databases of one homeserver", "the configured databases are not of one kind (some the engine's, some Synapse's)")
	}
	if kinds[schema.KindSynapse] {
		return r.planSynapse(ctx)
	}
	return r.planEngine()
}

func (r *rehearsal) planEngine() error {
	set := engine.Schema()
	r.report.Kind = "engine"
	t := target{schema: r.o.ToSchema}
	if r.o.ToRelease != "" {
		v, err := releases.ParseVersion(r.o.ToRelease)
		if err != nil {
			return fault.Usagef("--to-release: %v", err)
		}
		f, ok := releases.FactFor(v)
		if !ok {
			return fault.Errorf(fault.Version, "name a release from v1.0.0 to "+releases.Newest().String()+", or use --to-schema", "no schema facts are known for v%s", v)
		}
		t.schema, t.release = f.Schema, v
		if f.Schema > set.Version || f.Schema < set.Oldest {
			return fmt.Errorf("%w: v%s runs at schema %d; the engine's schema goes from %d to %d", schema.ErrBadTarget, v, f.Schema, set.Oldest, set.Version)
		}
	}
	if t.schema == 0 {
		t.schema = set.Version
	}
	if t.release == nil {
		if m := releases.Matching(t.schema, 0); len(m) > 0 {
			t.release = m[len(m)-1].Version
		}
	}
	r.target = t
	r.report.Target = t.schema
	nothing := true
	for _, s := range r.sources {
		p, err := set.Plan(s.state, inspect.EngineOf(s.dbc), schema.Options{Target: t.schema, Stores: s.dbc.DataStores, ServerName: r.o.Config.ServerName})
		if err != nil {
			return err
		}
		s.plan = p
		if !p.Empty() || len(s.state.Updates) > 0 {
			nothing = false
		}
	}
	if nothing {
		r.report.Nothing = fmt.Sprintf("the database is at schema %d with no background update pending: the upgrade to %d has nothing to do", r.sources[0].state.Version, t.schema)
	}
	return nil
}

func (r *rehearsal) planSynapse(ctx context.Context) error {
	r.report.Kind = "synapse"
	if r.o.Python == "" {
		s := r.sources[0].state
		return fmt.Errorf("%w: %s is Synapse's (schema %d, compat %d), and its upgrade is that release's update_synapse_database",
			ErrNeedPython, r.sources[0].desc, s.Version, s.Compat)
	}
	rel, err := synapse.Probe(ctx, r.o.Python)
	if err != nil {
		return err
	}
	r.release = rel
	r.report.Release = rel.Version
	r.report.Target = rel.Schema
	if r.o.ToRelease != "" {
		want, err := releases.ParseVersion(r.o.ToRelease)
		if err != nil {
			return fault.Usagef("--to-release: %v", err)
		}
		have, err := releases.ParseVersion(rel.Version)
		if err != nil || !want.Equal(have) {
			return fault.Errorf(fault.Usage, "name the Python of v"+want.String()+", or leave --to-release out to rehearse the release at --python",
				"--to-release %s, but the Synapse at --python %s is %s", r.o.ToRelease, r.o.Python, rel.Version)
		}
	}
	if r.o.ToSchema != 0 && r.o.ToSchema != rel.Schema {
		return fault.Errorf(fault.Usage, "a Synapse release decides its schema: leave --to-schema out",
			"--to-schema %d, but the Synapse at --python %s (%s) upgrades to schema %d", r.o.ToSchema, r.o.Python, rel.Version, rel.Schema)
	}
	if v, err := releases.ParseVersion(rel.Version); err == nil {
		r.target = target{schema: rel.Schema, release: v}
	}
	for _, s := range r.sources {
		st := s.state
		if st.HasCompat && st.Compat > rel.Schema {
			return fmt.Errorf("%w: %s has compat version %d, and Synapse %s (schema %d) cannot use it: it was upgraded by a newer release",
				schema.ErrCompatTooNew, s.desc, st.Compat, rel.Version, rel.Schema)
		}
	}
	nothing := true
	for _, s := range r.sources {
		if s.state.Version <= rel.Schema || len(s.state.Updates) > 0 {
			nothing = false
		}
	}
	if nothing {
		r.report.Nothing = fmt.Sprintf("the database is at schema %d, newer than Synapse %s's %d (a rolled-back release): it has nothing to apply", r.sources[0].state.Version, rel.Version, rel.Schema)
	}
	return nil
}

// prepare removes stale scratch copies, checks free space and names the
// copies.
func (r *rehearsal) prepare(ctx context.Context) error {
	sqliteStamp, pgStamp := stamp(time.Now())
	for _, s := range r.sources {
		r.report.Databases = append(r.report.Databases, DatabaseReport{Label: s.dbc.Label, Source: s.desc,
			Before: Versions{Schema: s.state.Version, Compat: s.state.Compat}})
		if s.dbc.IsSQLite() {
			dir := r.o.ScratchDir
			if dir == "" {
				dir = filepath.Dir(s.dbc.SQLitePath())
			}
			removed, _, err := cleanSQLite(dir, s.dbc.SQLitePath(), false)
			if err != nil {
				return err
			}
			r.report.Cleaned = append(r.report.Cleaned, removed...)
			if err := checkFreeSpace(dir, s.size); err != nil {
				return err
			}
			s.dir = sqliteScratchDir(dir, s.dbc.SQLitePath(), sqliteStamp)
			s.scratch = filepath.Join(s.dir, filepath.Base(s.dbc.SQLitePath()))
			continue
		}
		s.scratch = pgScratchName(s.dbc.DBName(), pgStamp)
		maint, err := maintenance(ctx, s.dbc, appName(s.scratch))
		if err != nil {
			return err
		}
		s.maint = maint
		removed, _, err := cleanPostgres(ctx, maint, s.dbc.DBName(), false)
		if err != nil {
			return err
		}
		r.report.Cleaned = append(r.report.Cleaned, removed...)
		if note := pgFreeSpace(ctx, maint, s.dbc, s.size); note != "" {
			r.note(note)
		}
	}
	for i, s := range r.sources {
		s.rep = &r.report.Databases[i]
	}
	return nil
}

// checkFreeSpace refuses a copy that cannot fit.
func checkFreeSpace(dir string, need int64) error {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return fmt.Errorf("%w: %q: %v", ErrScratch, dir, err)
	}
	free := int64(st.Bavail) * int64(st.Bsize)
	// The copy, plus room for what the upgrade adds (new indexes, rebuilt
	// tables) and a margin.
	want := need + need/4 + 64<<20
	if free < want {
		return fmt.Errorf("%w: %s free in %q, the copy needs about %s (the database is %s, and the upgrade adds to it)",
			ErrScratch, human(free), dir, human(want), human(need))
	}
	return nil
}

// pgFreeSpace checks the server's free space where it can (a server on
// this machine whose data directory this role may see) and says so where
// it cannot.
func pgFreeSpace(ctx context.Context, maint *pgx.Conn, dbc config.Database, need int64) string {
	host := dbc.Args["host"]
	local := host == "" || strings.HasPrefix(host, "/") || host == "localhost" || host == "127.0.0.1" || host == "::1"
	var dir string
	err := maint.QueryRow(ctx, "SELECT setting FROM pg_settings WHERE name = 'data_directory'").Scan(&dir)
	if !local || err != nil || dir == "" {
		return fmt.Sprintf("free space on the PostgreSQL server was not checked (the copy needs about %s, the size of the database)", human(need))
	}
	if _, err := os.Stat(dir); err != nil {
		return fmt.Sprintf("free space on the PostgreSQL server was not checked (its data directory is not readable here; the copy needs about %s)", human(need))
	}
	if err := checkFreeSpace(dir, need); err != nil {
		return "warning: " + strings.TrimPrefix(err.Error(), ErrScratch.Error()+": ")
	}
	return ""
}

func human(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	default:
		return fmt.Sprintf("%d KiB", n>>10)
	}
}

// copyAll makes every copy and opens it for the upgrade.
func (r *rehearsal) copyAll(ctx context.Context) error {
	t0 := time.Now()
	for _, s := range r.sources {
		label := s.dbc.Label
		progress := func(done, total int64) {
			r.emit(Event{Type: "copy_progress", Database: label, Done: done, Total: total})
		}
		var c Copy
		var err error
		if s.dbc.IsSQLite() {
			// The scratch directory first: a rehearsal stopped once it said
			// it is copying always leaves the one the next removes.
			if s.lock, err = lockDir(s.dir); err != nil {
				return err
			}
			r.emit(Event{Type: "copy_start", Database: label, Total: s.size, Name: s.scratch})
			c, err = backupSQLite(ctx, s.dbc.SQLitePath(), s.scratch, progress)
			if err != nil {
				return err
			}
			if c.WritersWaitedMillis > 0 {
				r.note(fmt.Sprintf("%s is in rollback-journal mode and kept being written: it was copied under its read lock in the end, and the homeserver's writes waited up to %d ms for it (in WAL mode they never wait)", s.desc, c.WritersWaitedMillis))
			}
			s.copy, err = db.OpenSQLite(ctx, s.scratch, db.Options{})
		} else {
			r.emit(Event{Type: "copy_start", Database: label, Total: s.size, Name: s.scratch})
			c, err = copyPostgres(ctx, s.maint, s.dbc, s.scratch, pgCopyOptions{
				Jobs: r.o.Jobs, ForceSnapshot: r.o.ForceSnapshot, Verify: r.o.VerifyCopy, Progress: progress, Note: r.note,
				OnSnapshot: func(id string) {
					if r.o.OnSnapshot != nil {
						r.o.OnSnapshot(label, id)
					}
				},
			})
			if err != nil {
				return err
			}
			s.copy, err = db.Open(ctx, db.WithDBName(s.dbc, s.scratch), db.Options{AppName: appName(s.scratch)})
		}
		if err != nil {
			return fmt.Errorf("open the copy %s: %w", s.scratch, err)
		}
		s.copy.Label = s.dbc.Label
		s.copy.DataStores = s.dbc.DataStores
		s.rep.Copy = c
		r.emit(Event{Type: "copy_done", Database: label, Method: c.Method, Done: c.Bytes, Millis: c.Millis, Name: s.scratch})
	}
	r.report.CopyMillis = time.Since(t0).Milliseconds()
	return nil
}

// copyFailed classifies a failed copy: an error of no class of its own
// (an I/O or driver error) is the scratch copy's (fault.Backup).
func copyFailed(err error) error {
	if fault.ClassOf(err) != fault.Internal {
		return err
	}
	return fault.Wrap(fault.Backup, err, "the original database was not written: fix what the error names (space, permissions of the scratch directory or the PostgreSQL role) and rehearse again")
}

// countRows counts the rows of every table. SQLite's virtual tables (FTS)
// are left out: their rows are in their shadow tables, which are counted,
// and their module may not be in this build.
func countRows(ctx context.Context, d *db.DB) (map[string]int64, error) {
	tables, err := d.Tables(ctx, d)
	if err != nil {
		return nil, err
	}
	if d.Engine == db.SQLite {
		virtual := map[string]bool{}
		rows, err := d.QueryContext(ctx, "SELECT name FROM sqlite_master WHERE type = 'table' AND sql LIKE 'CREATE VIRTUAL TABLE%'")
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var n string
			if err := rows.Scan(&n); err != nil {
				rows.Close()
				return nil, err
			}
			virtual[n] = true
		}
		rows.Close()
		kept := tables[:0]
		for _, t := range tables {
			if !virtual[t] {
				kept = append(kept, t)
			}
		}
		tables = kept
	}
	out := make(map[string]int64, len(tables))
	for _, t := range tables {
		var n int64
		if err := d.QueryRowContext(ctx, "SELECT count(*) FROM "+db.QuoteIdent(t)).Scan(&n); err != nil {
			return nil, fmt.Errorf("count the rows of %s in the copy: %w", t, err)
		}
		out[t] = n
	}
	return out, nil
}

func tableCounts(before, after map[string]int64) []TableCount {
	names := map[string]bool{}
	for t := range before {
		names[t] = true
	}
	for t := range after {
		names[t] = true
	}
	out := make([]TableCount, 0, len(names))
	for t := range names {
		tc := TableCount{Table: t, Before: -1, After: -1}
		if n, ok := before[t]; ok {
			tc.Before = n
		}
		if n, ok := after[t]; ok {
			tc.After = n
		}
		out = append(out, tc)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Table < out[j].Table })
	return out
}

// fail records the first failure.
func (r *rehearsal) fail(f *Failure) {
	if r.report.Failure == nil {
		r.report.Failure = f
	}
}

// finish reads the versions after, and keeps or drops the copies.
func (r *rehearsal) finish(ctx context.Context) error {
	for _, s := range r.sources {
		st, err := schema.ReadState(ctx, s.copy, s.copy)
		if err != nil {
			return err
		}
		s.rep.After = Versions{Schema: st.Version, Compat: st.Compat}
	}
	if !r.o.Keep {
		return nil
	}
	for _, s := range r.sources {
		s.copy.Close()
		s.copy = nil
		if s.dbc.IsSQLite() {
			kept := filepath.Join(filepath.Dir(s.dir), sqliteKept+strings.TrimPrefix(filepath.Base(s.dir), sqlitePrefix))
			_ = os.Remove(filepath.Join(s.dir, "homeserver.json"))
			if err := os.Rename(s.dir, kept); err != nil {
				return fmt.Errorf("keep the copy: %w", err)
			}
			_ = os.Remove(filepath.Join(kept, lockName))
			s.lock.release()
			s.dir = ""
			s.rep.Copy.Kept = filepath.Join(kept, filepath.Base(s.scratch))
			continue
		}
		kept := pgKept + strings.TrimPrefix(s.scratch, pgPrefix)
		if _, err := s.maint.Exec(ctx, fmt.Sprintf("ALTER DATABASE %s RENAME TO %s", qi(s.scratch), qi(kept))); err != nil {
			return fmt.Errorf("keep the copy: %w", err)
		}
		s.scratch = ""
		s.rep.Copy.Kept = kept
	}
	return nil
}

// dropCopies closes and drops the copies (unless kept), also after a failure
// or an interruption.
func (r *rehearsal) dropCopies() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, s := range r.sources {
		if s.copy != nil {
			s.copy.Close()
			s.copy = nil
		}
		if s.dir != "" {
			_ = os.RemoveAll(s.dir)
			s.lock.release()
		}
		if s.maint != nil {
			if s.scratch != "" {
				if err := dropPostgres(ctx, s.maint, s.scratch); err != nil && !errors.Is(err, context.Canceled) {
					r.report.Notes = append(r.report.Notes, fmt.Sprintf("the scratch database %s could not be dropped (%v): the next rehearsal removes it", s.scratch, err))
				}
			}
			s.maint.Close(ctx)
		}
	}
}

// Clean removes the scratch copies of the config's databases that no
// running rehearsal uses, kept ones included. It returns what it removed
// and what is in use.
func Clean(ctx context.Context, cfg *config.Config, scratchDir string) (removed, busy []string, err error) {
	for _, dbc := range cfg.Databases {
		var rm, bz []string
		if dbc.IsSQLite() {
			dir := scratchDir
			if dir == "" {
				dir = filepath.Dir(dbc.SQLitePath())
			}
			rm, bz, err = cleanSQLite(dir, dbc.SQLitePath(), true)
		} else {
			var maint *pgx.Conn
			maint, err = maintenance(ctx, dbc, "hsops update_database rehearse --clean")
			if err != nil {
				return removed, busy, err
			}
			rm, bz, err = cleanPostgres(ctx, maint, dbc.DBName(), true)
			maint.Close(ctx)
		}
		removed = append(removed, rm...)
		busy = append(busy, bz...)
		if err != nil {
			return removed, busy, err
		}
	}
	return removed, busy, nil
}
