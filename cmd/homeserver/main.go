// Command homeserver is the hsops homeserver engine: the process that synctl
// starts and stops. It is invoked like Synapse's synapse.app.homeserver and
// synapse.app.generic_worker.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"hsops/internal/cli"
	"hsops/internal/complete"
	"hsops/internal/fault"
	"hsops/internal/server"
)

// tool is the homeserver's exit table.
var tool = cli.Tool{
	Name: "homeserver",
	OK:   "stopped cleanly (or: the config was generated, the user registered)",
	Exits: []cli.Exit{
		{Class: fault.Usage, Meaning: "usage error"},
		{Class: fault.Config, Meaning: "configuration error (also: the pid file names another homeserver process)"},
		{Class: fault.Database, Meaning: "the database cannot be opened or reached"},
		{Class: fault.NotOurs, Meaning: "not a database the engine can serve (a Synapse database, not a homeserver database, or a port into it not finished)"},
		{Class: fault.Version, Meaning: "refused: versions or server checks (schema too new or too old, not upgraded for a worker,\nPostgreSQL too old, wrong encoding or locale, sequences behind their tables)"},
		{Class: fault.Locked, Meaning: "another process holds the schema lock (update_database, port_db: it is named)"},
		{Class: fault.InUse, Meaning: "already running (the pid file names this homeserver, alive)"},
		{Class: fault.Permission, Meaning: "a file it must write (its SQLite database, log or pid file, a new config) is not writable by the user\nit runs as, or the PostgreSQL session is read-only (a replica, default_transaction_read_only)"},
		{Class: fault.Listen, Meaning: "a listener cannot be bound (address in use, permission)"},
		{Class: fault.Down, Meaning: "register-user: the homeserver cannot be reached"},
		{Class: fault.Rejected, Meaning: "register-user: the homeserver refused the registration (the user exists, a wrong secret, ...)"},
		{Class: fault.Internal, Meaning: "internal error"},
		{Class: fault.Interrupted, Meaning: "interrupted during start-up (SIGTERM or SIGINT once serving is a clean stop, 0)"},
	},
	Interrupted: "nothing was left half-done (each schema version commits whole or not at all)",
	Again:       "start it again",
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	root := newRootCmd(stdin, stdout, stderr)
	root.SetContext(ctx)
	t := tool
	t.Hint = cli.ConfigHint(root, "the config", "config-path")
	return cli.Run(t, root, args, stdout, stderr)
}

type options struct {
	configPaths []string
	daemonize   bool
	generate    bool
	gen         generateOptions
}

func newRootCmd(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	o := &options{}
	root := &cobra.Command{
		Use:   "homeserver -c homeserver.yaml [-c worker.yaml] [--daemonize]",
		Short: "The hsops homeserver engine (main process or generic worker)",
		Long: `homeserver runs the hsops homeserver engine. With a config whose worker_app is
synapse.app.generic_worker it runs as a worker.

At start-up it refuses to run while the homeserver its pid file names is
running, loads the config, opens the database, brings its schema up to date
(the main process) or checks that it is (a worker), checks the server
(PostgreSQL version, encoding, locale), binds its listeners, writes its pid
file and starts serving. With --daemonize it detaches, and the command returns
only once the daemon is listening (exit 0) or has failed (the reason, non-zero),
so that synctl knows the truth. It speaks sd_notify when NOTIFY_SOCKET is set.

SIGTERM or SIGINT: stop accepting, finish requests and the current
background-update batch, remove the pid file, exit 0. SIGHUP: reopen the log.

` + tool.ExitHelp(),
		Args: cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.generate {
				return runGenerate(cmd, "--generate-config", o.configPaths, o.gen)
			}
			return runServe(cmd.Context(), o, stderr)
		},
	}
	f := root.Flags()
	f.StringArrayVarP(&o.configPaths, "config-path", "c", nil, "config file or directory (repeatable; later files override earlier ones)")
	f.BoolVarP(&o.daemonize, "daemonize", "D", false, "detach and run in the background")
	f.BoolVar(&o.generate, "generate-config", false, "write a new config to the -c path and exit (as the generate-config command)")
	o.gen.flags(root)
	root.AddCommand(newGenerateCmd())
	root.AddCommand(newRegisterCmd(stdin, stdout, stderr))
	complete.Add(root)
	return root
}

// runServe runs the homeserver until SIGTERM or SIGINT (or, detached, until
// the daemon is ready).
func runServe(ctx context.Context, o *options, stderr io.Writer) error {
	p, err := server.LoadProcess(o.configPaths)
	if err != nil {
		return err
	}
	return p.Run(ctx, p.Daemonize(o.daemonize), func(logFile string) {
		fmt.Fprintf(stderr, "homeserver: listening; logging to %s\n", logFile)
	})
}
