package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/Masterminds/semver/v3"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/spf13/cobra"

	"hsops/internal/cli"
	"hsops/internal/config"
	"hsops/internal/db"
	"hsops/internal/fault"
	"hsops/internal/releases"
	"hsops/rollback"
	"hsops/schema"
)

type rollbackOptions struct {
	*globals
	toSchema       int
	toRelease      string
	dryRun         bool
	yes            bool
	allowDataLoss  bool
	noBackup       bool
	backupDatabase string
	force          bool
}

func newRollbackCmd(ctx context.Context, g *globals) *cobra.Command {
	o := &rollbackOptions{globals: g}
	cmd := &cobra.Command{
		Use:   "rollback --database-config homeserver.yaml (--to-schema N | --to-release X.Y.Z) [--dry-run] [--yes]",
		Short: "Undo schema deltas: roll the database back to an older schema or release",
		Long: `rollback takes the database back to an older schema version, so that an older
release can run on it.

On a database the hsops engine created, every delta has a reverse: the plan
lists them (newest first), the bookkeeping a fresh database at the target
has, and the data each reverse touches, counted. A rollback that would lose
data (or run a reverse that cannot give back what its delta took) is refused
unless --allow-data-loss is given. SQLite databases are copied next to the
file first (VACUUM INTO; --no-backup to skip); PostgreSQL databases are
copied with --backup-database NAME (CREATE DATABASE ... TEMPLATE). Then
everything runs in one transaction under the schema lock: a rollback that
fails or is killed leaves the database as it was.

--to-release maps a release to its schema version through the release
facts; when that release accepts the database as it is (its schema version
is at least the database's compat version) nothing needs to change. On a
Synapse database, --to-release applies the rollbacks Synapse's upgrade
notes document (v1.26.0 to v1.25.0, v1.13.0 to v1.12.4, v1.4.0 to v1.3.1)
and otherwise says whether the release accepts the database.

Stop the homeserver first.`,
		Args: cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runRollback(ctx, o)
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.toSchema, "to-schema", 0, "roll back to this schema version (68 or newer)")
	f.StringVar(&o.toRelease, "to-release", "", "roll back so that this release (e.g. 1.83.0) can run on the database")
	f.BoolVar(&o.dryRun, "dry-run", false, "print the plan, change nothing")
	f.BoolVarP(&o.yes, "yes", "y", false, "do not ask for confirmation")
	f.BoolVar(&o.allowDataLoss, "allow-data-loss", false, "roll back even if data is lost (the plan lists it)")
	f.BoolVar(&o.noBackup, "no-backup", false, "do not copy the SQLite file first")
	f.StringVar(&o.backupDatabase, "backup-database", "", "PostgreSQL: first copy the database to a new database of this name")
	f.BoolVar(&o.force, "force", false, "roll back even though the homeserver seems to be running (pid file, the SQLite file open elsewhere, other PostgreSQL sessions)")
	return cmd
}

// errNotConfirmed is a rollback nobody confirmed.
var errNotConfirmed = fault.New(fault.NotConfirmed, "the rollback was not confirmed", "nothing was changed")

func runRollback(ctx context.Context, o *rollbackOptions) error {
	if (o.toSchema == 0) == (o.toRelease == "") {
		return cli.Usagef("give exactly one of --to-schema and --to-release")
	}
	var release *semver.Version
	if o.toRelease != "" {
		v, err := releases.ParseVersion(o.toRelease)
		if err != nil {
			return cli.Usagef("--to-release %q: %v", o.toRelease, err)
		}
		release = v
	}
	cfg, err := o.loadConfig()
	if err != nil {
		return err
	}
	if cfg.IsWorker() {
		return fmt.Errorf("%w: this is a worker's configuration: roll back with the main process's", schema.ErrWorker)
	}
	if o.backupDatabase != "" {
		for _, dbc := range cfg.Databases {
			if !dbc.IsPostgres() {
				return cli.Usagef("--backup-database is for PostgreSQL; SQLite databases are copied next to their file")
			}
		}
	}
	if len(cfg.Databases) > 1 && !o.dryRun {
		// Each database would be rolled back in its own transaction: a
		// failure on the second would come after the first was changed.
		return cli.Usagef("this configuration has %d databases: roll them back one at a time, each with a config naming only it (--dry-run shows the plans of all)", len(cfg.Databases))
	}
	for _, dbc := range cfg.Databases {
		if err := rollbackOne(ctx, o, cfg, dbc, release); err != nil {
			return err
		}
	}
	return nil
}

func rollbackOne(ctx context.Context, o *rollbackOptions, cfg *config.Config, dbc config.Database, release *semver.Version) error {
	ro, st, err := inspect(ctx, dbc)
	if err != nil {
		return err
	}
	if ro == nil {
		return fmt.Errorf("%w: %q", db.ErrNotFound, dbc.SQLitePath())
	}
	defer ro.Close()
	desc := describe(dbc)
	switch st.Kind {
	case schema.KindSynapse:
		if release == nil {
			return fault.Wrap(fault.NotOurs, fmt.Errorf("%w: this is a Synapse database (schema %d): only the rollbacks Synapse documents apply to it", schema.ErrNotEngine, st.Version),
				"nothing was changed: name the release you are going back to, e.g. update_database rollback --to-release 1.25.0 --dry-run")
		}
		return rollbackSynapse(ctx, o, cfg, dbc, ro, st, release)
	case schema.KindEmpty, schema.KindUnknown:
		return fmt.Errorf("%w: it has no schema_version", schema.ErrNotHomeserver)
	}
	set := rollback.Engine()
	target := o.toSchema
	if release != nil {
		f, ok := releases.FactFor(release)
		if !ok {
			return fmt.Errorf("%w: v%s is not a release the tools know", schema.ErrBadTarget, release)
		}
		if releases.CanRun(f, st.Version, st.Compat) {
			return say(o.globals, map[string]any{"event": "result", "database": desc, "version": st.Version, "compat": st.Compat, "release": "v" + release.String(), "as_is": true},
				"%s: v%s (schema %d) accepts the database as it is (schema %d, compat %d): nothing to change; install v%s and start it",
				desc, release, f.Schema, st.Version, st.Compat, release)
		}
		if f.Schema < set.Schema.Oldest {
			return fmt.Errorf("%w: v%s has schema %d and the engine's rollbacks reach schema %d at the lowest: restore the backup taken before the upgrade", schema.ErrBadTarget, release, f.Schema, set.Schema.Oldest)
		}
		target = f.Schema
	}
	opts := rollback.Options{Target: target, Stores: dbc.DataStores, AllowDataLoss: o.allowDataLoss, ServerName: cfg.ServerName, Holder: "update_database rollback"}
	plan, err := set.Plan(ctx, ro, ro, st, opts)
	if err != nil {
		return err
	}
	backup := ""
	if !plan.Empty() && dbc.IsSQLite() && !o.noBackup {
		backup = backupPath(dbc.SQLitePath(), plan.From, plan.Target)
	}
	if o.json {
		cli.NewJSONLines(o.stdout).Emit(rollbackPlanJSON(desc, plan, o.dryRun, backup))
	} else {
		formatRollbackPlan(o.stdout, desc, plan, backup, o.backupDatabase, o.allowDataLoss)
	}
	if o.dryRun {
		if !o.json {
			fmt.Fprintln(o.stdout, "nothing was changed (--dry-run)")
		}
		return nil
	}
	if plan.Empty() {
		return nil
	}
	if !o.allowDataLoss {
		if err := plan.Refusal(); err != nil {
			return err
		}
	}
	if err := o.confirm(fmt.Sprintf("roll %s back from schema %d to %d?", desc, plan.From, plan.Target)); err != nil {
		return err
	}
	ro.Close()
	d, backup, err := o.openForWrite(ctx, cfg, dbc, backup)
	if err != nil {
		return err
	}
	defer d.Close()
	if d.Engine == db.SQLite {
		opts.BackupPath = backup
	}
	res, err := set.Apply(ctx, d, opts)
	if err != nil {
		return err
	}
	if d.Engine == db.SQLite {
		backup = res.Backup
	}
	return reportRollback(o.globals, desc, res, backup)
}

// openForWrite opens the database for the rollback after the refusals
// (homeserver running, other sessions on PostgreSQL) and, for PostgreSQL
// with --backup-database, the copy. It returns the backup's description:
// the SQLite path given, or the PostgreSQL copy's name.
func (o *rollbackOptions) openForWrite(ctx context.Context, cfg *config.Config, dbc config.Database, backup string) (*db.DB, string, error) {
	if !o.force {
		if err := refuseIfRunning(cfg, dbc); err != nil {
			return nil, "", err
		}
	}
	if o.backupDatabase != "" {
		if err := backupPostgres(ctx, dbc, o.backupDatabase); err != nil {
			return nil, "", err
		}
		backup = "PostgreSQL database " + o.backupDatabase
	}
	d, err := db.Open(ctx, dbc, db.Options{AppName: "hsops update_database rollback"})
	if err != nil {
		return nil, "", err
	}
	if d.Engine == db.Postgres && !o.force {
		if err := refuseIfSessions(ctx, d); err != nil {
			d.Close()
			return nil, "", err
		}
	}
	return d, backup, nil
}

// backupPath names the copy of a SQLite file made before a rollback: the
// first free name of <file>.before-rollback-<from>-to-<to>[.N].
func backupPath(path string, from, to int) string {
	base := fmt.Sprintf("%s.before-rollback-%d-to-%d", path, from, to)
	p := base
	for n := 1; ; n++ {
		if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
			return p
		}
		p = fmt.Sprintf("%s.%d", base, n)
	}
}

// confirm asks on a terminal, or refuses without --yes.
func (o *rollbackOptions) confirm(question string) error {
	if o.yes {
		return nil
	}
	if !cli.IsTerminal(o.stdin) {
		return fault.Wrap(fault.NotConfirmed, errNotConfirmed, "nothing was changed: check the plan above, then run the same command with --yes")
	}
	fmt.Fprintf(o.stderr, "%s [y/N] ", question)
	answer, _ := bufio.NewReader(o.stdin).ReadString('\n')
	switch strings.ToLower(strings.TrimSpace(answer)) {
	case "y", "yes":
		return nil
	}
	return errNotConfirmed
}

// say prints a result line, or its JSON with --json.
func say(g *globals, event map[string]any, format string, args ...any) error {
	if g.json {
		cli.NewJSONLines(g.stdout).Emit(event)
		return nil
	}
	fmt.Fprintf(g.stdout, format+"\n", args...)
	return nil
}

// backupPostgres copies a PostgreSQL database with CREATE DATABASE ...
// TEMPLATE, from a connection to the maintenance database: PostgreSQL
// copies a database only while nobody is connected to it.
func backupPostgres(ctx context.Context, dbc config.Database, name string) error {
	maint := dbc
	maint.Args = map[string]string{}
	for k, v := range dbc.Args {
		maint.Args[k] = v
	}
	delete(maint.Args, "database")
	maint.Args["dbname"] = "postgres"
	d, err := db.Open(ctx, maint, db.Options{AppName: "hsops update_database rollback"})
	if err != nil {
		return fault.Wrap(fault.Backup, fmt.Errorf("%w: connect to the maintenance database: %v", rollback.ErrBackup, err),
			"nothing was changed: the copy is made from the postgres database, which this user must be able to reach; or leave out --backup-database and take a pg_dump first")
	}
	defer d.Close()
	_, err = d.ExecContext(ctx, fmt.Sprintf("CREATE DATABASE %s TEMPLATE %s", db.QuoteIdent(name), db.QuoteIdent(dbc.DBName())))
	var pgErr *pgconn.PgError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &pgErr) && pgErr.Code == "42P04":
		return fault.Wrap(fault.Backup, fmt.Errorf("%w: database %q already exists", rollback.ErrBackup, name),
			"nothing was changed: choose another --backup-database name, or drop that database first")
	case errors.As(err, &pgErr) && pgErr.Code == "55006":
		return fault.Wrap(fault.InUse, fmt.Errorf("%w: other sessions are connected to %q, and PostgreSQL copies a database only while nobody is", errInUse, dbc.DBName()),
			"stop the homeserver and its workers, then run the same command again")
	}
	return fault.Wrap(fault.Backup, fmt.Errorf("%w: %v", rollback.ErrBackup, err),
		"nothing was changed: fix the cause (space, CREATEDB privilege), or leave out --backup-database and take a pg_dump first")
}

// formatRollbackPlan prints a rollback plan for people. Its output is
// stable (golden files).
func formatRollbackPlan(w io.Writer, desc string, p *rollback.Plan, backup, backupDB string, allowLoss bool) {
	fmt.Fprintf(w, "rollback plan for %s (%s, %s):\n", desc, p.Engine, strings.Join(p.Stores, ", "))
	fmt.Fprintf(w, "  the database is at schema %d (compat %d); %s\n", p.From, p.State.Compat, acceptedBy(p.From, p.State.Compat))
	if p.Empty() {
		fmt.Fprintf(w, "  %s\n", p.Note)
		return
	}
	fmt.Fprintf(w, "  target: schema %d (compat %d); %s\n", p.Target, p.CompatAfter, acceptedBy(p.Target, p.CompatAfter))
	for _, s := range p.Steps {
		fmt.Fprintf(w, "  undo schema %d:\n", s.Version)
		for _, r := range s.Reverses {
			kind := ""
			if r.Go != nil {
				kind = " (Go)"
			}
			fmt.Fprintf(w, "    %s%s\n      %s\n", r.Path, kind, r.Summary)
		}
	}
	created := ""
	if !p.UpgradedAfter {
		created = fmt.Sprintf("; it counts as created at schema %d", p.CreatedAfter)
	}
	fmt.Fprintf(w, "  bookkeeping: schema_version %d -> %d, schema_compat_version %d -> %d, %s removed%s\n",
		p.From, p.Target, p.State.Compat, p.CompatAfter, plural(len(p.RemoveApplied), "applied_schema_deltas row"), created)
	if len(p.Dequeued) > 0 {
		fmt.Fprintf(w, "  background updates removed: %s\n", strings.Join(p.Dequeued, ", "))
	}
	if len(p.Requeued) > 0 {
		fmt.Fprintf(w, "  background updates queued again: %s\n", strings.Join(p.Requeued, ", "))
	}
	if len(p.Loses) > 0 {
		fmt.Fprintln(w, "  data lost (refused unless --allow-data-loss):")
		for _, c := range p.Loses {
			fmt.Fprintf(w, "    %s: %s (%s)\n", c.String(), countText(c), c.Why)
		}
	}
	for _, i := range p.Irreversible {
		fmt.Fprintf(w, "  cannot be undone (refused unless --allow-data-loss): %s: %s\n", i.Delta, i.Why)
	}
	var dropped []string
	for _, c := range p.Drops {
		if c.Rows > 0 {
			dropped = append(dropped, fmt.Sprintf("%s (%s)", c.String(), countText(c)))
		}
	}
	if len(dropped) > 0 {
		fmt.Fprintf(w, "  derived data dropped: %s\n", strings.Join(dropped, ", "))
	}
	if len(p.Keeps) > 0 {
		fmt.Fprintf(w, "  derived values kept: %s\n", joinData(p.Keeps))
	}
	if len(p.Restores) > 0 {
		fmt.Fprintf(w, "  tables recreated empty: %s\n", joinData(p.Restores))
	}
	formatBackup(w, p.Engine, backup, backupDB)
	if lost := p.Lost(); len(lost) > 0 || len(p.Irreversible) > 0 {
		verdict := "refused unless --allow-data-loss"
		if allowLoss {
			verdict = "the loss is allowed (--allow-data-loss)"
		}
		fmt.Fprintf(w, "  %s in %s, in one transaction; %s\n", plural(p.ReverseCount(), "reverse"), plural(len(p.Steps), "version"), verdict)
	} else {
		fmt.Fprintf(w, "  %s in %s, in one transaction; no data is lost\n", plural(p.ReverseCount(), "reverse"), plural(len(p.Steps), "version"))
	}
}

func countText(c rollback.Count) string {
	switch {
	case c.Rows < 0:
		return "not present"
	case c.Kind == "column":
		return plural(int(c.Rows), "value")
	}
	return plural(int(c.Rows), "row")
}

func joinData(cs []rollback.Count) string {
	var out []string
	for _, c := range cs {
		out = append(out, c.String())
	}
	return strings.Join(out, ", ")
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// acceptedBy says which Synapse releases accept a database.
func acceptedBy(version, compat int) string {
	f, ok := releases.OldestCanRun(version, compat)
	if !ok {
		return "no known Synapse release accepts it"
	}
	return fmt.Sprintf("Synapse %s and later accept it", f.Tag())
}

func rollbackPlanJSON(desc string, p *rollback.Plan, dryRun bool, backup string) map[string]any {
	type step struct {
		Version  int      `json:"version"`
		Reverses []string `json:"reverses"`
	}
	steps := []step{}
	for _, s := range p.Steps {
		st := step{Version: s.Version, Reverses: []string{}}
		for _, r := range s.Reverses {
			st.Reverses = append(st.Reverses, r.Path)
		}
		steps = append(steps, st)
	}
	out := map[string]any{
		"event": "rollback_plan", "database": desc, "engine": p.Engine, "from": p.From, "target": p.Target,
		"compat_after": p.CompatAfter, "steps": steps, "remove_applied": nonNil(p.RemoveApplied),
		"dequeued": nonNil(p.Dequeued), "requeued": nonNil(p.Requeued),
		"loses": p.Loses, "drops": p.Drops, "keeps": p.Keeps, "restores_empty": p.Restores,
		"irreversible": p.Irreversible, "refused": p.Refusal() != nil, "dry_run": dryRun,
	}
	if backup != "" {
		out["backup"] = backup
	}
	if p.Note != "" {
		out["note"] = p.Note
	}
	return out
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func reportRollback(g *globals, desc string, res *rollback.Result, backup string) error {
	p := res.Plan
	if g.json {
		cli.NewJSONLines(g.stdout).Emit(map[string]any{
			"event": "result", "database": desc, "from": p.From, "version": res.Version, "compat": p.CompatAfter,
			"reverses": p.ReverseCount(), "ms": res.Duration.Milliseconds(), "backup": backup, "pending_updates": len(res.After),
		})
		return nil
	}
	fmt.Fprintf(g.stdout, "rolled back from schema %d to %d (compat %d): %s in one transaction, %d ms\n",
		p.From, res.Version, p.CompatAfter, plural(p.ReverseCount(), "reverse"), res.Duration.Milliseconds())
	if backup != "" {
		fmt.Fprintf(g.stdout, "the database as it was is in %s\n", backup)
	}
	fmt.Fprintf(g.stdout, "next: run a release at schema %d (%s), or upgrade again with update_database --database-config %s\n",
		res.Version, acceptedBy(res.Version, p.CompatAfter), g.configArg())
	if n := len(res.After); n > 0 {
		fmt.Fprintf(g.stdout, "%s pending; they run when the homeserver starts, or with --run-background-updates\n", plural(n, "background update"))
	}
	return nil
}

// rollbackSynapse applies Synapse's documented recipes to a Synapse database.
// formatBackup says which copy of the database is made before a rollback.
func formatBackup(w io.Writer, engine db.Engine, backup, backupDB string) {
	switch {
	case backup != "":
		fmt.Fprintf(w, "  first, a copy of the database: %s\n", filepath.Base(backup))
	case backupDB != "":
		fmt.Fprintf(w, "  first, a copy of the database: PostgreSQL database %s\n", backupDB)
	case engine == db.Postgres:
		fmt.Fprintln(w, "  no copy is made: add --backup-database NAME, or first run pg_dump -Fc -f before-rollback.dump <dbname>")
	default:
		fmt.Fprintln(w, "  no copy is made (--no-backup)")
	}
}

func rollbackSynapse(ctx context.Context, o *rollbackOptions, cfg *config.Config, dbc config.Database, ro *db.DB, st *schema.State, release *semver.Version) error {
	desc := describe(dbc)
	p, err := rollback.PlanSynapse(st, ro.Engine, release)
	if err != nil {
		return err
	}
	backup := ""
	if len(p.Recipes) > 0 && dbc.IsSQLite() && !o.noBackup {
		backup = backupPath(dbc.SQLitePath(), st.Version, p.Recipes[len(p.Recipes)-1].ToSchema)
	}
	if o.json {
		cli.NewJSONLines(o.stdout).Emit(map[string]any{"event": "rollback_plan", "database": desc, "kind": "synapse", "from": st.Version,
			"release": "v" + release.String(), "release_schema": p.Fact.Schema, "as_is": p.AsIs, "recipes": p.Recipes, "advice": p.Advice,
			"dry_run": o.dryRun, "backup": backup, "backup_database": o.backupDatabase})
	} else {
		formatSynapsePlan(o.stdout, desc, p, backup, o.backupDatabase)
	}
	if o.dryRun {
		if !o.json {
			fmt.Fprintln(o.stdout, "nothing was changed (--dry-run)")
		}
		return nil
	}
	if p.AsIs {
		return nil
	}
	if err := o.confirm(fmt.Sprintf("apply %s to %s?", p.Recipes[0].Name, desc)); err != nil {
		return err
	}
	ro.Close()
	d, backup, err := o.openForWrite(ctx, cfg, dbc, backup)
	if err != nil {
		return err
	}
	defer d.Close()
	sqliteBackup := ""
	if d.Engine == db.SQLite {
		sqliteBackup = backup
	}
	if err := rollback.ApplySynapse(ctx, d, p, "update_database rollback", sqliteBackup); err != nil {
		return err
	}
	last := p.Recipes[len(p.Recipes)-1]
	if o.json {
		cli.NewJSONLines(o.stdout).Emit(map[string]any{"event": "result", "database": desc, "from": st.Version, "version": last.ToSchema, "backup": backup})
		return nil
	}
	fmt.Fprintf(o.stdout, "applied %s: the database is at schema %d, for v%s\n", recipeNames(p.Recipes), last.ToSchema, release)
	if backup != "" {
		fmt.Fprintf(o.stdout, "the database as it was is in %s\n", backup)
	}
	for _, r := range p.Recipes {
		for _, a := range r.Advice {
			fmt.Fprintf(o.stdout, "next: %s\n", a)
		}
	}
	return nil
}

func recipeNames(rs []rollback.Recipe) string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Name)
	}
	return strings.Join(out, ", then ")
}

// formatSynapsePlan prints the rollback of a Synapse database.
func formatSynapsePlan(w io.Writer, desc string, p *rollback.SynapsePlan, backup, backupDB string) {
	compat := "none"
	if p.State.HasCompat {
		compat = fmt.Sprint(p.State.Compat)
	}
	fmt.Fprintf(w, "rollback plan for %s (Synapse database at schema %d, compat %s):\n", desc, p.State.Version, compat)
	fmt.Fprintf(w, "  target: v%s (schema %d)\n", p.Release, p.Fact.Schema)
	if p.AsIs {
		fmt.Fprintf(w, "  v%s accepts the database as it is: nothing to change; install it and start it\n", p.Release)
	}
	for _, r := range p.Recipes {
		fmt.Fprintf(w, "  recipe %q (%s):\n", r.Name, r.URL())
		for _, s := range r.Steps {
			fmt.Fprintf(w, "    %s:\n", s.Say)
			for _, stmt := range s.Statements(p.Engine) {
				fmt.Fprintf(w, "      %s\n", stmt)
			}
		}
	}
	if len(p.Recipes) > 0 {
		formatBackup(w, p.Engine, backup, backupDB)
		fmt.Fprintln(w, "  all statements run in one transaction")
	}
	for _, r := range append(append([]rollback.Recipe{}, p.Recipes...), p.Advice...) {
		for _, a := range r.Advice {
			fmt.Fprintf(w, "  advice (%s): %s\n", r.Name, a)
		}
	}
}
