package rollback

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/Masterminds/semver/v3"

	"hsops/internal/config"
	"hsops/internal/db"
	"hsops/internal/fault"
	"hsops/internal/inspect"
	"hsops/internal/offline"
	"hsops/internal/portstate"
	"hsops/internal/releases"
	"hsops/schema"
)

// holder and appName name a rollback to another process that finds the
// schema lock taken, or a session connected.
const (
	holder  = "update_database rollback"
	appName = "hsops update_database rollback"
)

// Request is a rollback an operator asks for, of every database of a
// configuration.
type Request struct {
	// ToSchema or ToRelease is the target (exactly one). A release is
	// mapped to its schema version through the release facts; on a Synapse
	// database it selects the rollbacks Synapse's upgrade notes document.
	ToSchema  int
	ToRelease *semver.Version
	// AllowDataLoss lets the rollback destroy the data its plan lists.
	AllowDataLoss bool
	// NoBackup skips the copy made first (of the SQLite file, or of the
	// PostgreSQL database).
	NoBackup bool
	// BackupDatabase, for PostgreSQL, names the new database the database
	// is copied to first (CREATE DATABASE ... TEMPLATE); by default it is
	// <dbname>_before_rollback_<from>_to_<to>.
	BackupDatabase string
	// Force goes ahead though the homeserver seems to be running.
	Force bool
	// DryRun plans only, so a configuration with several databases may be
	// planned (each would be rolled back in a transaction of its own).
	DryRun bool
}

// AsIs is an engine database that the target release accepts as it is.
type AsIs struct {
	Release *semver.Version
	Fact    releases.SchemaFact
}

// Prepared is the rollback of one database, planned read-only: nothing has
// changed yet. Exactly one of AsIs, Plan and Synapse says what Run does.
type Prepared struct {
	Request
	// Database describes the database for messages.
	Database string
	State    *schema.State
	AsIs     *AsIs
	Plan     *Plan
	Synapse  *SynapsePlan
	// Backup is the file a SQLite database is copied to first ("" when
	// none is made, and on PostgreSQL).
	Backup string

	cfg  *config.Config
	dbc  config.Database
	opts Options
	// namedCopy says the tool named BackupDatabase (not the operator).
	namedCopy bool
}

// Outcome is what Run did.
type Outcome struct {
	From    int
	Version int
	// Backup is the copy made first: the SQLite file, or "PostgreSQL
	// database NAME"; "" when none was made.
	Backup string
	// Result is the engine rollback's result (nil on a Synapse database).
	Result *Result
}

// Prepare checks a request against the configuration and plans the
// rollback of each of its databases, reading only.
func Prepare(ctx context.Context, cfg *config.Config, req Request) ([]*Prepared, error) {
	if cfg.IsWorker() {
		return nil, fmt.Errorf("%w: this is a worker's configuration: roll back with the main process's", schema.ErrWorker)
	}
	if req.BackupDatabase != "" && req.NoBackup {
		return nil, fault.Usagef("--backup-database names the copy that --no-backup skips: give one of them")
	}
	if req.BackupDatabase != "" {
		for _, dbc := range cfg.Databases {
			if !dbc.IsPostgres() {
				return nil, fault.Usagef("--backup-database is for PostgreSQL; SQLite databases are copied next to their file")
			}
		}
	}
	if len(cfg.Databases) > 1 && !req.DryRun {
		// Each database would be rolled back in its own transaction: a
		// failure on the second would come after the first was changed.
		return nil, fault.Usagef("this configuration has %d databases: roll them back one at a time, each with a config naming only it (--dry-run shows the plans of all)", len(cfg.Databases))
	}
	var out []*Prepared
	for _, dbc := range cfg.Databases {
		p, err := prepare(ctx, cfg, dbc, req)
		if err != nil {
			return nil, fault.InterruptCtx(ctx, err, "nothing was changed")
		}
		out = append(out, p)
	}
	return out, nil
}

func prepare(ctx context.Context, cfg *config.Config, dbc config.Database, req Request) (*Prepared, error) {
	ro, st, err := inspect.ForWriting(ctx, dbc)
	if err != nil {
		return nil, err
	}
	defer ro.Close()
	if err := portstate.Check(ctx, ro); err != nil {
		return nil, err
	}
	p := &Prepared{Request: req, Database: inspect.Describe(dbc), State: st, cfg: cfg, dbc: dbc}
	switch st.Kind {
	case schema.KindSynapse:
		return p, p.planSynapse(ctx, ro)
	case schema.KindEmpty, schema.KindUnknown:
		return nil, fmt.Errorf("%w: it has no schema_version", schema.ErrNotHomeserver)
	}
	set := Engine()
	target := req.ToSchema
	if req.ToRelease != nil {
		f, ok := releases.FactFor(req.ToRelease)
		if !ok {
			return nil, fmt.Errorf("%w: v%s is not a release the tools know", schema.ErrBadTarget, req.ToRelease)
		}
		if releases.CanRun(f, st.Version, st.Compat) {
			p.AsIs = &AsIs{Release: req.ToRelease, Fact: f}
			return p, nil
		}
		if f.Schema < set.Schema.Oldest {
			return nil, fmt.Errorf("%w: v%s has schema %d and the engine's rollbacks reach schema %d at the lowest: restore the backup taken before the upgrade", schema.ErrBadTarget, req.ToRelease, f.Schema, set.Schema.Oldest)
		}
		target = f.Schema
	}
	p.opts = Options{Target: target, Stores: dbc.DataStores, AllowDataLoss: req.AllowDataLoss, ServerName: cfg.ServerName, Holder: holder}
	if p.Plan, err = set.Plan(ctx, ro, ro, st, p.opts); err != nil {
		return nil, err
	}
	if !p.Plan.Empty() {
		if err := p.planCopy(ctx, ro, p.Plan.From, p.Plan.Target); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// planCopy names the copy made before anything changes: a file next to a
// SQLite database, a new PostgreSQL database (the first free name of
// <dbname>_before_rollback_<from>_to_<to>[_N] unless BackupDatabase names
// it); none with NoBackup.
func (p *Prepared) planCopy(ctx context.Context, ro *db.DB, from, to int) error {
	switch {
	case p.NoBackup:
		return nil
	case p.dbc.IsSQLite():
		p.Backup = BackupPath(p.dbc.SQLitePath(), from, to)
		return nil
	case p.BackupDatabase != "":
		return nil
	}
	name, err := freeDatabaseName(ctx, ro, fmt.Sprintf("%s_before_rollback_%d_to_%d", p.dbc.DBName(), from, to))
	if err != nil {
		return err
	}
	p.BackupDatabase, p.namedCopy = name, true
	return nil
}

// planSynapse plans the rollback of a Synapse database: only to a release,
// through the recipes Synapse's upgrade notes document.
func (p *Prepared) planSynapse(ctx context.Context, ro *db.DB) error {
	e := ro.Engine
	if p.ToRelease == nil {
		return fault.Wrap(fault.NotOurs, fmt.Errorf("%w: this is a Synapse database (schema %d): only the rollbacks Synapse documents apply to it", schema.ErrNotEngine, p.State.Version),
			"nothing was changed: name the release you are going back to, e.g. update_database rollback --to-release 1.25.0 --dry-run")
	}
	sp, err := PlanSynapse(p.State, e, p.ToRelease)
	if err != nil {
		return err
	}
	p.Synapse = sp
	if n := len(sp.Recipes); n > 0 {
		return p.planCopy(ctx, ro, p.State.Version, sp.Recipes[n-1].ToSchema)
	}
	return nil
}

// Empty reports whether the rollback changes nothing: the release accepts
// the database as it is, or it is at the target already.
func (p *Prepared) Empty() bool {
	switch {
	case p.AsIs != nil:
		return true
	case p.Synapse != nil:
		return p.Synapse.AsIs
	}
	return p.Plan.Empty()
}

// Refusal is the reason the rollback may not run as asked (data it would
// lose, without AllowDataLoss), or nil.
func (p *Prepared) Refusal() error {
	if p.Plan == nil || p.AllowDataLoss {
		return nil
	}
	return p.Plan.Refusal()
}

// Run rolls the database back as planned: unless Force, it refuses while
// the homeserver is using the database; it copies the database first
// (BackupDatabase, Backup), then runs the plan under the schema lock in one
// transaction, after checking the database did not move since it was
// planned. A rollback that fails (or is interrupted) has changed nothing:
// the copy it made is removed.
func (p *Prepared) Run(ctx context.Context) (*Outcome, error) {
	if p.Empty() {
		return &Outcome{From: p.State.Version, Version: p.State.Version}, nil
	}
	if err := p.Refusal(); err != nil {
		return nil, err
	}
	out := &Outcome{From: p.State.Version}
	oo := offline.Options{AppName: appName, Force: p.Force, Alters: true}
	pgCopy := ""
	if p.BackupDatabase != "" {
		oo.Before = func(ctx context.Context) error {
			if err := BackupPostgres(ctx, p.dbc, p.BackupDatabase, p.namedCopy); err != nil {
				return err
			}
			pgCopy = p.BackupDatabase
			return nil
		}
		out.Backup = "PostgreSQL database " + p.BackupDatabase
	}
	// A file already there is not this run's copy (BackupSQLite refuses
	// to overwrite it).
	fileCopy := ""
	if p.Backup != "" {
		if _, err := os.Stat(p.Backup); errors.Is(err, os.ErrNotExist) {
			fileCopy = p.Backup
		}
	}
	d, err := offline.Open(ctx, p.cfg, p.dbc, oo)
	if err != nil {
		return nil, p.undo(ctx, pgCopy, fileCopy, err)
	}
	defer d.Close()
	sqliteBackup := ""
	if d.Engine == db.SQLite {
		sqliteBackup = p.Backup
		out.Backup = p.Backup
	}
	if p.Synapse != nil {
		if err := ApplySynapse(ctx, d, p.Synapse, holder, sqliteBackup); err != nil {
			return nil, p.undo(ctx, pgCopy, fileCopy, err)
		}
		out.Version = p.Synapse.Recipes[len(p.Synapse.Recipes)-1].ToSchema
		return out, nil
	}
	opts := p.opts
	opts.BackupPath = sqliteBackup
	res, err := Engine().Apply(ctx, d, opts)
	if err != nil {
		return nil, p.undo(ctx, pgCopy, fileCopy, err)
	}
	if d.Engine == db.SQLite {
		out.Backup = res.Backup
	}
	out.Result, out.Version = res, res.Version
	return out, nil
}

// undo removes the copies a failed rollback made (the database is as it
// was, so they are not needed) and says where one is when it cannot.
func (p *Prepared) undo(ctx context.Context, pgCopy, file string, err error) error {
	err = fault.InterruptCtx(ctx, err, "nothing was changed (the rollback runs in one transaction)")
	var left []string
	if file != "" {
		if rmErr := os.Remove(file); rmErr != nil && !errors.Is(rmErr, os.ErrNotExist) {
			left = append(left, file)
		}
	}
	if pgCopy != "" {
		// Dropped even when the run was interrupted.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if dropErr := DropCopy(dctx, p.dbc, pgCopy); dropErr != nil {
			left = append(left, "PostgreSQL database "+pgCopy)
		}
	}
	if len(left) > 0 {
		return fmt.Errorf("%w (the copy made first, %s, could not be removed: it is the database as it still is, not needed)", err, strings.Join(left, " and "))
	}
	return err
}

// freeDatabaseName returns base, or base_N for the first N that names no
// database, within PostgreSQL's 63 bytes.
func freeDatabaseName(ctx context.Context, q db.Querier, base string) (string, error) {
	const max = 63
	for n := 1; ; n++ {
		suffix := ""
		if n > 1 {
			suffix = fmt.Sprintf("_%d", n)
		}
		name := base
		if len(name)+len(suffix) > max {
			name = name[:max-len(suffix)]
		}
		name += suffix
		var taken bool
		if err := q.QueryRowContext(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&taken); err != nil {
			return "", fmt.Errorf("name the copy of the database: %w", err)
		}
		if !taken {
			return name, nil
		}
	}
}
