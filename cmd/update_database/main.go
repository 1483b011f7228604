// Command update_database creates, upgrades and inspects homeserver
// databases, runs their background updates and repairs known corruptions.
// It accepts the flags of Synapse's update_synapse_database.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"hsops/internal/cli"
	"hsops/internal/config"
	"hsops/internal/db"
	"hsops/rollback"
	"hsops/schema"
)

// Exit codes. They are documented in --help and README.
const (
	exitOK           = 0
	exitActions      = 1 // upgrade-check: actions needed
	exitBlockers     = 2 // upgrade-check: blockers
	exitUsage        = 3
	exitConfig       = 4
	exitDatabase     = 5
	exitNotOurs      = 6
	exitVersion      = 7
	exitLocked       = 8
	exitDelta        = 9
	exitUpdate       = 10
	exitRefused      = 11
	exitInUse        = 12
	exitBackup       = 13
	exitNotConfirmed = 14
	exitInternal     = 70
	exitInterrupted  = 130
)

const exitCodesHelp = `Exit codes:
  0   success (or nothing to do)
  1   upgrade-check: actions are needed before upgrading
  2   upgrade-check: something blocks the upgrade
  3   usage error (unknown flag, missing argument)
  4   configuration error (missing, unreadable or invalid homeserver.yaml)
  5   database cannot be opened (missing file, not a database, server unreachable)
  6   refused: not a database this tool may change (a Synapse database, or not a homeserver database)
  7   refused: versions (compat version too new, database too old, bad target, server too old, wrong locale)
  8   another process holds the schema lock
  9   a schema delta failed (its version was rolled back)
  10  a background update failed (its last batch was rolled back)
  11  refused: the operation would lose data or cannot be undone (see --allow-data-loss)
  12  refused: the homeserver is running on the database (stop it first)
  13  rollback: the copy of the database made first failed (nothing was changed)
  14  rollback: not confirmed (nothing was changed; see --yes)
  70  internal error
  130 interrupted`

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	g := &globals{stdout: stdout, stderr: stderr, stdin: stdin}
	root := newRootCmd(ctx, g)
	// Hints name the config the user gave where they say <config>.
	withConfig := func(hint string) string {
		if len(g.configPaths) > 0 {
			hint = strings.ReplaceAll(hint, "<config>", g.configArg())
		}
		return hint
	}
	return cli.Run(cli.Tool{Name: "update_database", UsageCode: exitUsage, InternalCode: exitInternal, Classify: classify, Hint: withConfig}, root, args, stdout, stderr)
}

// globals are the flags every subcommand shares.
type globals struct {
	configPaths []string
	verbose     bool
	json        bool
	stdout      io.Writer
	stderr      io.Writer
	stdin       io.Reader
}

func newRootCmd(ctx context.Context, g *globals) *cobra.Command {
	opts := &upgradeOptions{globals: g}
	root := &cobra.Command{
		Use:   "update_database --database-config homeserver.yaml [flags]",
		Short: "Create or upgrade a homeserver database and run its background updates",
		Long: `update_database brings the database of a homeserver.yaml to the current schema
(creating it if it is empty), on SQLite or PostgreSQL, safely: everything is
planned and checked before the first write, each schema version is applied in
one transaction, and two runs cannot change the same database at once.

It accepts the flags of Synapse's update_synapse_database. It upgrades and
rolls back only databases created by the hsops engine; on a Synapse database
it reports where the database stands (status, upgrade-check) and runs the
repairs and rollbacks Synapse's upgrade notes prescribe.

` + exitCodesHelp,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runUpgrade(ctx, opts)
		},
	}
	pf := root.PersistentFlags()
	pf.StringArrayVarP(&g.configPaths, "database-config", "c", nil, "homeserver config file or directory of *.yaml files (repeatable)")
	pf.BoolVarP(&g.verbose, "verbose", "v", false, "say more about each step")
	pf.BoolVar(&g.json, "json", false, "print one JSON object per event, for machines")
	f := root.Flags()
	f.BoolVar(&opts.runBackground, "run-background-updates", false, "after the schema upgrade, run every pending background update to completion")
	f.BoolVar(&opts.dryRun, "dry-run", false, "print the plan and change nothing")
	f.IntVar(&opts.target, "to-version", 0, "stop at this schema version (default: the newest, 83)")
	root.AddCommand(newStatusCmd(ctx, g))
	root.AddCommand(newBackgroundCmd(ctx, g))
	root.AddCommand(newRepairCmd(ctx, g))
	root.AddCommand(newUpgradeCheckCmd(ctx, g))
	root.AddCommand(newNotesCmd(g))
	root.AddCommand(newRollbackCmd(ctx, g))
	return root
}

// loadConfig loads the --database-config files.
func (g *globals) loadConfig() (*config.Config, error) {
	if len(g.configPaths) == 0 {
		return nil, cli.Usagef("--database-config is required")
	}
	cfg, err := config.Load(g.configPaths...)
	if err != nil {
		return nil, err
	}
	if g.verbose {
		for _, w := range cfg.Warnings {
			fmt.Fprintf(g.stderr, "update_database: %s\n", w)
		}
	}
	if len(cfg.Databases) == 0 {
		return nil, fmt.Errorf("%w in %s", config.ErrNoDatabase, strings.Join(cfg.Files, ", "))
	}
	return cfg, nil
}

func (g *globals) configArg() string {
	return strings.Join(g.configPaths, " --database-config ")
}

// classify maps errors to exit codes and hints.
func classify(err error) (int, string, bool) {
	var (
		reverseErr *rollback.ReverseError
		recipeErr  *rollback.RecipeError
		deltaErr   *schema.DeltaError
		dupErr     *schema.DuplicateEdgesError
		updErr     *schema.UpdateError
	)
	switch {
	case errors.Is(err, context.Canceled):
		return exitInterrupted, "interrupted: nothing was left half-done; run the same command again to continue", true
	case errors.Is(err, config.ErrNotFound):
		return exitConfig, "check the path given to --database-config", true
	case errors.Is(err, config.ErrNoDatabase):
		return exitConfig, "add a database section (name: sqlite3 or psycopg2, with args) to the config", true
	case errors.Is(err, config.ErrInvalid):
		return exitConfig, "fix the config where the message above says", true
	case errors.Is(err, db.ErrCannotCreate):
		return exitDatabase, "create that directory, or point database.args.database in the config at a writable place", true
	case errors.Is(err, db.ErrNotFound):
		return exitDatabase, "check database.args.database in the config; run update_database --database-config <config> to create a new database", true
	case errors.Is(err, db.ErrNotDatabase):
		return exitDatabase, "database.args.database must point at a SQLite database file", true
	case errors.Is(err, db.ErrUnreachable):
		return exitDatabase, "check that PostgreSQL is running and that host, port, user, password and dbname in database.args are right", true
	case errors.Is(err, schema.ErrNotEngine):
		return exitNotOurs, "nothing was changed. Upgrade it by starting the new Synapse release (or with Synapse's update_synapse_database);\n`update_database status` and `update_database upgrade-check` report on it", true
	case errors.Is(err, schema.ErrNotHomeserver):
		return exitNotOurs, "nothing was changed: point database.args at the homeserver's database, or at an empty one to create it", true
	case errors.Is(err, schema.ErrCompatTooNew):
		return exitVersion, "nothing was changed: run the release that upgraded it (or newer), or roll it back with `update_database rollback`", true
	case errors.Is(err, schema.ErrTooOld):
		return exitVersion, "nothing was changed: upgrade it with Synapse first (to v1.56 or later, schema 68+)", true
	case errors.Is(err, schema.ErrBadTarget):
		return exitVersion, "nothing was changed: choose a version between 68 and 83: --to-version upgrades to one at or above the database's, rollback --to-schema goes down to one below it", true
	case errors.Is(err, schema.ErrWorker):
		return exitVersion, "start the main process first, then the workers", true
	case errors.Is(err, db.ErrServerTooOld):
		return exitVersion, "nothing was changed: upgrade the database server", true
	case errors.Is(err, db.ErrBadEncoding), errors.Is(err, db.ErrBadLocale):
		return exitVersion, "nothing was changed: create the database with\n  createdb --encoding=UTF8 --locale=C --template=template0 --owner=<user> <name>", true
	case errors.Is(err, schema.ErrLocked):
		return exitLocked, "nothing was changed: wait for that process to finish, then run the same command again", true
	case errors.Is(err, rollback.ErrDataLoss):
		return exitRefused, "nothing was changed: the plan (--dry-run) lists the data; add --allow-data-loss to roll back anyway", true
	case errors.Is(err, rollback.ErrBackup):
		return exitBackup, "nothing was changed: free space next to the database for the copy, or add --no-backup to roll back without one", true
	case errors.Is(err, rollback.ErrNoRecipe):
		return exitNotOurs, "nothing was changed: restore the backup taken before the upgrade, or run a release that accepts the database", true
	case errors.Is(err, rollback.ErrMoved):
		return exitVersion, "nothing was changed: another process changed the schema meanwhile; check it with `update_database status`, then plan again", true
	case errors.Is(err, rollback.ErrNewerThanKnown):
		return exitVersion, "nothing was changed: use the update_database of the release that upgraded it", true
	case errors.As(err, &reverseErr):
		return exitDelta, "nothing was changed: the rollback ran in one transaction and was undone", true
	case errors.As(err, &recipeErr):
		return exitDelta, "nothing was changed: the recipe ran in one transaction and was undone", true
	case errors.As(err, &deltaErr):
		return exitDelta, fmt.Sprintf("version %d was rolled back; the versions before it stay applied. Fix the cause and run the same command again", deltaErr.Version), true
	case errors.As(err, &dupErr):
		return exitUpdate, "remove the duplicates, then run the updates again:\n  " + schema.RepairEdgesCommand + "\n  update_database --database-config <config> --run-background-updates", true
	case errors.As(err, &updErr):
		return exitUpdate, fmt.Sprintf("the failed batch was rolled back and %q keeps its progress; fix the cause and run:\n  update_database background run --update %s --database-config <config>", updErr.Update, updErr.Update), true
	case errors.Is(err, schema.ErrUnknownJob):
		return exitUsage, "nothing was changed: the engine's jobs are listed above; `update_database background status` shows what is queued", true
	case errors.Is(err, schema.ErrUpdateNotPending):
		return exitUsage, "`update_database background status` lists the pending updates", true
	case errors.Is(err, schema.ErrNoServerName):
		return exitConfig, "add server_name to the config given to --database-config", true
	}
	return 0, "", false
}
