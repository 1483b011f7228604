// Command hsload makes load for the homeserver and its tools: it fills
// databases directly (generate), drives a running homeserver through its
// HTTP API (http), and measures port_db against a raw PostgreSQL COPY of the
// same rows (bench-port), and port_db --switch-config under load
// (bench-switch).
package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"hsops/internal/cli"
	"hsops/internal/complete"
	"hsops/internal/config"
	"hsops/internal/fault"
)

// tool is hsload's exit table: every failure of a run is "failed".
var tool = cli.Tool{
	Name: "hsload",
	OK:   "done",
	Exits: []cli.Exit{
		{Class: fault.Usage, Meaning: "usage error"},
		{Class: fault.Config, Meaning: "configuration error"},
		{Class: fault.Failed, Meaning: "the run failed (see the error)"},
		{Class: fault.Interrupted, Meaning: "interrupted"},
	},
	Unclassified: fault.Failed,
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRootCmd(ctx, stdout, stderr)
	root.SetContext(ctx)
	t := tool
	t.Hint = cli.ConfigHint(root, "the config", "database-config", "config")
	return cli.Run(t, root, args, stdout, stderr)
}

func newRootCmd(ctx context.Context, stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "hsload generate|http|check|bench-port|bench-rehearse|bench-switch",
		Short: "Load generators and benchmarks for the homeserver and its tools",
		Long:  tool.ExitHelp(),
		Args:  cli.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			return cli.Usagef("name a subcommand: generate, http, check, bench-port, bench-rehearse or bench-switch")
		},
	}
	root.AddCommand(newGenerateCmd(ctx, stdout), newHTTPCmd(ctx, stdout), newCheckCmd(ctx, stdout), newBenchPortCmd(ctx, stdout, stderr),
		newBenchRehearseCmd(ctx, stdout, stderr), newBenchSwitchCmd(ctx, stdout))
	complete.Add(root)
	return root
}

// fromConfig fills the base URL (the first HTTP listener) and, when
// secret is not nil, the registration shared secret from the homeserver
// configs, where the flags left them empty; the URL is required.
func fromConfig(configs []string, url, secret *string) error {
	if len(configs) > 0 && (*url == "" || (secret != nil && *secret == "")) {
		cfg, err := config.Load(configs...)
		if err != nil {
			return err
		}
		if *url == "" {
			*url = config.BaseURL(cfg.Listeners)
		}
		if secret != nil && *secret == "" {
			*secret = cfg.RegistrationSharedSecret
		}
	}
	if *url == "" {
		return cli.Usagef("--url (or --config with an HTTP listener) is required")
	}
	return nil
}
