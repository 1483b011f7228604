// Command update_database creates, upgrades and inspects homeserver
// databases, runs their background updates and repairs known corruptions.
// It accepts the flags of Synapse's update_synapse_database.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"hsops/internal/cli"
	"hsops/internal/complete"
	"hsops/internal/config"
	"hsops/internal/fault"
)

// tool is update_database's exit table.
var tool = cli.Tool{
	Name: "update_database",
	OK:   "success (or nothing to do)",
	Exits: []cli.Exit{
		{Class: fault.Actions, Meaning: "upgrade-check: actions are needed before upgrading"},
		{Class: fault.Usage, Meaning: "usage error (unknown flag, missing argument)"},
		{Class: fault.Blockers, Meaning: "upgrade-check: something blocks the upgrade; rehearse: the upgrade failed on the copy"},
		{Class: fault.Config, Meaning: "configuration error (missing, unreadable or invalid homeserver.yaml; --python names no Synapse installation)"},
		{Class: fault.Database, Meaning: "the database cannot be opened (missing file, not a database, server unreachable)"},
		{Class: fault.NotOurs, Meaning: "refused: not a database this tool may change (a Synapse database without --python, not a homeserver database, or a port into it not finished)"},
		{Class: fault.Version, Meaning: "refused: versions (a database newer than hsops knows, database too old, bad target, server too old, wrong locale)"},
		{Class: fault.Locked, Meaning: "another process holds the schema lock"},
		{Class: fault.Delta, Meaning: "a schema delta failed (its version was rolled back)"},
		{Class: fault.Update, Meaning: "a background update failed (its last batch was rolled back)"},
		{Class: fault.DataLoss, Meaning: "refused: the operation would lose data or cannot be undone (see --allow-data-loss)"},
		{Class: fault.InUse, Meaning: "refused: the homeserver is running on the database (stop it first)"},
		{Class: fault.Backup, Meaning: "rollback: the copy of the database made first failed (nothing was changed); rehearse: the scratch copy cannot be made"},
		{Class: fault.NotConfirmed, Meaning: "rollback: not confirmed (nothing was changed; see --yes)"},
		{Class: fault.Permission, Meaning: "refused: this user cannot write (or read) the database, its directory or its lock file (run it as the homeserver's user), or the PostgreSQL session is read-only (a replica)"},
		{Class: fault.Down, Meaning: "background enabled: the homeserver cannot be reached"},
		{Class: fault.Rejected, Meaning: "background enabled: the homeserver refused the request (not an admin's token)"},
		{Class: fault.Internal, Meaning: "internal error"},
		{Class: fault.Interrupted, Meaning: "interrupted"},
	},
	Interrupted: "nothing was left half-done (each version and each batch commits whole or not at all)",
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	g := &globals{stdout: stdout, stderr: stderr, stdin: stdin}
	root := newRootCmd(g)
	root.SetContext(ctx)
	// Hints name the config the user gave where they say <config>.
	withConfig := func(hint string) string {
		if len(g.configPaths) > 0 {
			hint = strings.ReplaceAll(hint, "<config>", g.configArg())
		}
		return hint
	}
	t := tool
	t.Hint = withConfig
	return cli.Run(t, root, args, stdout, stderr)
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

func newRootCmd(g *globals) *cobra.Command {
	opts := &upgradeOptions{globals: g}
	root := &cobra.Command{
		Use:   "update_database --database-config homeserver.yaml [flags]",
		Short: "Create or upgrade a homeserver database and run its background updates",
		Long: `update_database brings the database of a homeserver.yaml to the current schema
(creating it if it is empty), on SQLite or PostgreSQL, safely: everything is
planned and checked before the first write, each schema version is applied in
one transaction, and two runs cannot change the same database at once.

It accepts the flags of Synapse's update_synapse_database. It upgrades and
rolls back databases created by the hsops engine itself. On a Synapse
database, with the Python of a Synapse release (--python PY, else
$SYNAPSE_PYTHON, else the synapse installed on PATH), it runs that release's
update_synapse_database with the same guards: the plan first, the refusal
under a running homeserver, the schema lock, progress per background update,
and Synapse's hang after a failing background update detected and stopped.
It also reports where a Synapse database stands (status, upgrade-check) and
runs the repairs and rollbacks Synapse's upgrade notes prescribe.

` + tool.ExitHelp(),
		Args: cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runUpgrade(cmd.Context(), opts)
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
	f.StringVar(&opts.python, "python", "", "Synapse databases: run the upgrade of the Synapse release installed at this Python (default: $SYNAPSE_PYTHON, else the synapse on PATH)")
	root.AddCommand(newStatusCmd(g), newBackgroundCmd(g), newRepairCmd(g), newUpgradeCheckCmd(g), newNotesCmd(g), newRollbackCmd(g), newRehearseCmd(g))
	complete.Add(root)
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
