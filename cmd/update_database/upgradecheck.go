package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/Masterminds/semver/v3"
	"github.com/spf13/cobra"

	"hsops/internal/cli"
	"hsops/internal/releases"
	"hsops/internal/upgradecheck"
)

type checkOptions struct {
	*globals
	from, to   string
	workersDir string
	junit      string
	server     string
}

func newUpgradeCheckCmd(g *globals) *cobra.Command {
	o := &checkOptions{globals: g}
	cmd := &cobra.Command{
		Use:   "upgrade-check --database-config homeserver.yaml --to VERSION [--from VERSION] [--workers DIR]",
		Short: "List the upgrade notes between two releases that apply to this deployment, and check them",
		Long: `upgrade-check reads Synapse's upgrade notes (as data) between the installed
release and --to, decides which apply to this deployment, and checks the
deployment against each that can be checked: configuration keys a release
removed or deprecated, the database (PostgreSQL version and locale, duplicated
state_group_edges rows, sequences, pending background updates) and its shape
(workers, Redis, application services, modules, SSO).

The database's schema and compat versions are always read and always win.
The installed release is --from, else what the running server answers on
/_synapse/admin/v1/server_version, each a claim the database checks: one it
contradicts is a blocker and the database's versions are used instead (a
range, said as such; the oldest is used). A server is believed only when it
serves this database (the hsops engine names its database; a Synapse release
must be one that runs at the database's versions). The target release is
always checked against the database's compat version, and the database
checks run whatever the range. Workers are read from --workers DIR (*.yaml,
as synctl -a).

Exit: 0 nothing to do, 1 actions needed, 2 blockers; other codes are errors
(see update_database --help).`,
		Args: cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runUpgradeCheck(cmd, o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.to, "to", "", "the release to upgrade to (e.g. 1.80.0)")
	f.StringVar(&o.from, "from", "", "the installed release (default: ask the server, else infer from the database)")
	f.StringVar(&o.workersDir, "workers", "", "directory of worker configs (*.yaml)")
	f.StringVar(&o.junit, "junit", "", "also write a JUnit XML report to this file (for CI)")
	f.StringVar(&o.server, "server", "", "base URL of the running server (default: the config's first client listener)")
	return cmd
}

func newNotesCmd(g *globals) *cobra.Command {
	var from, to string
	cmd := &cobra.Command{
		Use:   "notes [--from VERSION] --to VERSION [--json]",
		Short: "Print Synapse's upgrade notes between two releases (no deployment needed)",
		Args:  cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if to == "" {
				return cli.Usagef("--to is required")
			}
			tv, err := releases.ParseVersion(to)
			if err != nil {
				return cli.Usagef("--to: %v", err)
			}
			var fv *semver.Version
			if from != "" {
				if fv, err = releases.ParseVersion(from); err != nil {
					return cli.Usagef("--from: %v", err)
				}
			}
			warnUnknown(g.stderr, fv, tv)
			if fv != nil && tv.LessThan(fv) {
				return cli.Usagef("--to v%s is older than --from v%s: that is a downgrade, which upgrade notes do not cover (update_database rollback --to-release %s --dry-run tells what a database needs)", tv, fv, tv)
			}
			notes := releases.Between(fv, tv)
			if g.json {
				out := cli.NewJSONLines(g.stdout)
				for _, n := range notes {
					out.Emit(map[string]any{"note": n, "url": n.URL()})
				}
				return nil
			}
			last := ""
			for i := len(notes) - 1; i >= 0; i-- {
				n := notes[i]
				if n.Version != last {
					fmt.Fprintf(g.stdout, "\nv%s\n", n.Version)
					last = n.Version
				}
				fmt.Fprintf(g.stdout, "  [%s] %s (%s)\n      %s\n      %s\n", n.Kind, n.Title, strings.Join(n.Applies, ", "), n.Summary, n.URL())
			}
			fmt.Fprintf(g.stdout, "\n%d notes; the data covers releases up to v%s\n", len(notes), releases.Newest())
			return nil
		},
	}
	cmd.Flags().StringVar(&from, "from", "", "the installed release (default: the beginning)")
	cmd.Flags().StringVar(&to, "to", "", "the release to upgrade to")
	return cmd
}

func runUpgradeCheck(cmd *cobra.Command, o *checkOptions) error {
	if o.to == "" {
		return cli.Usagef("--to is required")
	}
	opts := upgradecheck.Options{ConfigPaths: o.configPaths, ConfigArg: o.configArg(), WorkersDir: o.workersDir, Server: o.server}
	var err error
	if opts.To, err = releases.ParseVersion(o.to); err != nil {
		return cli.Usagef("--to: %v", err)
	}
	if o.from != "" {
		if opts.From, err = releases.ParseVersion(o.from); err != nil {
			return cli.Usagef("--from: %v", err)
		}
	}
	cfg, err := o.loadConfig()
	if err != nil {
		return err
	}
	report, err := upgradecheck.CheckDeployment(cmd.Context(), cfg, opts)
	if err != nil {
		return err
	}
	warnUnknown(o.stderr, report.FromVersion, report.ToVersion)
	if o.junit != "" {
		data, err := report.JUnit()
		if err != nil {
			return err
		}
		if err := os.WriteFile(o.junit, data, 0o644); err != nil {
			return err
		}
	}
	if o.json {
		cli.NewJSONLines(o.stdout).Emit(report)
	} else {
		report.Format(o.stdout)
	}
	return report.Verdict()
}

// warnUnknown warns about versions that are not releases hsops knows: its
// facts (schema versions, floors, rollback floors) say nothing about them.
func warnUnknown(w io.Writer, vs ...*semver.Version) {
	all := releases.All()
	newest := all[len(all)-1]
	for _, v := range vs {
		if v == nil {
			continue
		}
		if _, ok := releases.Find(v); !ok {
			fmt.Fprintf(w, "update_database: warning: v%s is not a release hsops knows (its facts go up to %s): what depends on its schema version is not checked\n", v, newest.Tag())
		}
	}
}
