package rollback

import (
	"context"
	"fmt"

	"github.com/Masterminds/semver/v3"

	"hsops/internal/config"
	"hsops/internal/db"
	"hsops/internal/fault"
	"hsops/internal/inspect"
	"hsops/internal/offline"
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
	// NoBackup skips the copy of a SQLite file made first.
	NoBackup bool
	// BackupDatabase, for PostgreSQL, is a new database the database is
	// copied to first (CREATE DATABASE ... TEMPLATE).
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
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

func prepare(ctx context.Context, cfg *config.Config, dbc config.Database, req Request) (*Prepared, error) {
	ro, st, err := inspect.InspectExisting(ctx, dbc)
	if err != nil {
		return nil, err
	}
	defer ro.Close()
	p := &Prepared{Request: req, Database: inspect.Describe(dbc), State: st, cfg: cfg, dbc: dbc}
	switch st.Kind {
	case schema.KindSynapse:
		return p, p.planSynapse(ro.Engine)
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
	if !p.Plan.Empty() && dbc.IsSQLite() && !req.NoBackup {
		p.Backup = BackupPath(dbc.SQLitePath(), p.Plan.From, p.Plan.Target)
	}
	return p, nil
}

// planSynapse plans the rollback of a Synapse database: only to a release,
// through the recipes Synapse's upgrade notes document.
func (p *Prepared) planSynapse(e db.Engine) error {
	if p.ToRelease == nil {
		return fault.Wrap(fault.NotOurs, fmt.Errorf("%w: this is a Synapse database (schema %d): only the rollbacks Synapse documents apply to it", schema.ErrNotEngine, p.State.Version),
			"nothing was changed: name the release you are going back to, e.g. update_database rollback --to-release 1.25.0 --dry-run")
	}
	sp, err := PlanSynapse(p.State, e, p.ToRelease)
	if err != nil {
		return err
	}
	p.Synapse = sp
	if n := len(sp.Recipes); n > 0 && p.dbc.IsSQLite() && !p.NoBackup {
		p.Backup = BackupPath(p.dbc.SQLitePath(), p.State.Version, sp.Recipes[n-1].ToSchema)
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
// planned.
func (p *Prepared) Run(ctx context.Context) (*Outcome, error) {
	if p.Empty() {
		return &Outcome{From: p.State.Version, Version: p.State.Version}, nil
	}
	if err := p.Refusal(); err != nil {
		return nil, err
	}
	out := &Outcome{From: p.State.Version}
	oo := offline.Options{AppName: appName, Force: p.Force}
	if p.BackupDatabase != "" {
		oo.Before = func(ctx context.Context) error { return BackupPostgres(ctx, p.dbc, p.BackupDatabase) }
		out.Backup = "PostgreSQL database " + p.BackupDatabase
	}
	d, err := offline.Open(ctx, p.cfg, p.dbc, oo)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	sqliteBackup := ""
	if d.Engine == db.SQLite {
		sqliteBackup = p.Backup
		out.Backup = p.Backup
	}
	if p.Synapse != nil {
		if err := ApplySynapse(ctx, d, p.Synapse, holder, sqliteBackup); err != nil {
			return nil, err
		}
		out.Version = p.Synapse.Recipes[len(p.Synapse.Recipes)-1].ToSchema
		return out, nil
	}
	opts := p.opts
	opts.BackupPath = sqliteBackup
	res, err := Engine().Apply(ctx, d, opts)
	if err != nil {
		return nil, err
	}
	if d.Engine == db.SQLite {
		out.Backup = res.Backup
	}
	out.Result, out.Version = res, res.Version
	return out, nil
}
