package main

import (
	"bufio"
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"hsops/internal/cli"
	"hsops/internal/fault"
	"hsops/internal/plural"
	"hsops/internal/releases"
	"hsops/rollback"
)

type rollbackOptions struct {
	*globals
	rollback.Request
	toRelease string
	yes       bool
}

func newRollbackCmd(g *globals) *cobra.Command {
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
unless --allow-data-loss is given. The database is copied first: a SQLite
file next to it (VACUUM INTO), a PostgreSQL database to a new database
(CREATE DATABASE ... TEMPLATE; --backup-database names it); when the copy
cannot be made nothing is done, unless --no-backup skips it. Then
everything runs in one transaction under the schema lock: a rollback that
fails or is killed leaves the database as it was (and removes its copy).

--to-release maps a release to its schema version through the release
facts; when that release accepts the database as it is (its schema version
is at least the database's compat version) nothing needs to change. On a
Synapse database, --to-release applies the rollbacks Synapse's upgrade
notes document (v1.26.0 to v1.25.0, v1.13.0 to v1.12.4, v1.4.0 to v1.3.1)
and otherwise says whether the release accepts the database.

Stop the homeserver first.`,
		Args: cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runRollback(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.ToSchema, "to-schema", 0, "roll back to this schema version (68 or newer)")
	f.StringVar(&o.toRelease, "to-release", "", "roll back so that this release (e.g. 1.83.0) can run on the database")
	f.BoolVar(&o.DryRun, "dry-run", false, "print the plan, change nothing")
	f.BoolVarP(&o.yes, "yes", "y", false, "do not ask for confirmation")
	f.BoolVar(&o.AllowDataLoss, "allow-data-loss", false, "roll back even if data is lost (the plan lists it)")
	f.BoolVar(&o.NoBackup, "no-backup", false, "do not copy the database first (the SQLite file, or the PostgreSQL database)")
	f.StringVar(&o.BackupDatabase, "backup-database", "", "PostgreSQL: the name of the copy made first (default: <dbname>_before_rollback_<from>_to_<to>)")
	f.BoolVar(&o.Force, "force", false, "roll back even though the homeserver seems to be running (pid file, the SQLite file open elsewhere, other PostgreSQL sessions)")
	return cmd
}

// errNotConfirmed is a rollback nobody confirmed.
var errNotConfirmed = fault.New(fault.NotConfirmed, "the rollback was not confirmed", "nothing was changed")

func runRollback(ctx context.Context, o *rollbackOptions) error {
	if (o.ToSchema == 0) == (o.toRelease == "") {
		return cli.Usagef("give exactly one of --to-schema and --to-release")
	}
	if o.toRelease != "" {
		v, err := releases.ParseVersion(o.toRelease)
		if err != nil {
			return cli.Usagef("--to-release %q: %v", o.toRelease, err)
		}
		o.ToRelease = v
	}
	cfg, err := o.loadConfig()
	if err != nil {
		return err
	}
	plans, err := rollback.Prepare(ctx, cfg, o.Request)
	if err != nil {
		return err
	}
	for _, p := range plans {
		if err := rollbackOne(ctx, o, p); err != nil {
			return err
		}
	}
	return nil
}

// rollbackOne shows the plan of one database, then (confirmed, and not
// --dry-run) runs it.
func rollbackOne(ctx context.Context, o *rollbackOptions, p *rollback.Prepared) error {
	printRollbackPlan(o, p)
	if p.AsIs != nil {
		return nil
	}
	if o.DryRun {
		if !o.json {
			fmt.Fprintln(o.stdout, "nothing was changed (--dry-run)")
		}
		return nil
	}
	if p.Empty() {
		return nil
	}
	if err := p.Refusal(); err != nil {
		return err
	}
	var question string
	if p.Synapse != nil {
		question = fmt.Sprintf("apply %s to %s?", p.Synapse.Recipes[0].Name, p.Database)
	} else {
		question = fmt.Sprintf("roll %s back from schema %d to %d?", p.Database, p.Plan.From, p.Plan.Target)
	}
	if err := o.confirm(question); err != nil {
		return err
	}
	out, err := p.Run(ctx)
	if err != nil {
		return err
	}
	if p.Synapse != nil {
		return reportSynapse(o, p, out)
	}
	return reportRollback(o.globals, p.Database, out)
}

// printRollbackPlan prints the plan, or its JSON with --json.
func printRollbackPlan(o *rollbackOptions, p *rollback.Prepared) {
	if o.json {
		cli.NewJSONLines(o.stdout).Emit(p.JSON())
		return
	}
	p.Format(o.stdout)
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

func reportRollback(g *globals, desc string, out *rollback.Outcome) error {
	res, p, backup := out.Result, out.Result.Plan, out.Backup
	if g.json {
		cli.NewJSONLines(g.stdout).Emit(map[string]any{
			"event": "result", "database": desc, "from": p.From, "version": res.Version, "compat": p.CompatAfter,
			"reverses": p.ReverseCount(), "ms": res.Duration.Milliseconds(), "backup": backup, "pending_updates": len(res.After),
		})
		return nil
	}
	fmt.Fprintf(g.stdout, "rolled back from schema %d to %d (compat %d): %s in one transaction, %d ms\n",
		p.From, res.Version, p.CompatAfter, plural.Count(p.ReverseCount(), "reverse"), res.Duration.Milliseconds())
	if backup != "" {
		fmt.Fprintf(g.stdout, "the database as it was is in %s\n", backup)
	}
	fmt.Fprintf(g.stdout, "next: run a release at schema %d (%s), or upgrade again with update_database --database-config %s\n",
		res.Version, rollback.AcceptedBy(res.Version, p.CompatAfter), g.configArg())
	if n := len(res.After); n > 0 {
		fmt.Fprintf(g.stdout, "%s pending; they run when the homeserver starts, or with --run-background-updates\n", plural.Count(n, "background update"))
	}
	return nil
}

// reportSynapse says what the recipes applied to a Synapse database did.
func reportSynapse(o *rollbackOptions, p *rollback.Prepared, out *rollback.Outcome) error {
	if o.json {
		cli.NewJSONLines(o.stdout).Emit(map[string]any{"event": "result", "database": p.Database, "from": out.From, "version": out.Version, "backup": out.Backup})
		return nil
	}
	fmt.Fprintf(o.stdout, "applied %s: the database is at schema %d, for v%s\n", recipeNames(p.Synapse.Recipes), out.Version, p.ToRelease)
	if out.Backup != "" {
		fmt.Fprintf(o.stdout, "the database as it was is in %s\n", out.Backup)
	}
	for _, r := range p.Synapse.Recipes {
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
