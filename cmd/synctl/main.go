// Command synctl starts, stops and restarts a homeserver's main process and
// workers through their pid files, like Synapse's synctl, and waits for the
// truth: a process counts as started once it answers /health, and as stopped
// once it has exited.
package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"hsops/internal/cli"
	"hsops/internal/complete"
	"hsops/internal/fault"
	"hsops/internal/proc"
	"hsops/internal/synapse"
)

// tool is synctl's exit table; 1 and 2 keep Synapse's synctl's meanings.
var tool = cli.Tool{
	Name: "synctl",
	OK:   "every requested operation succeeded (already running / not running count as success)",
	Exits: []cli.Exit{
		{Class: fault.StartFailed, Meaning: "a process failed to start (its reason is printed)"},
		{Class: fault.Usage, Meaning: "usage error"},
		{Class: fault.Config, Meaning: "configuration error (missing config, worker file or directory, pid_file, worker_app;\na pid file naming another homeserver process)"},
		{Class: fault.Permission, Meaning: "not permitted: a process may not be signalled, or the homeserver cannot write a file it needs\n(its database, log or pid file) as the user it runs as"},
		{Class: fault.StopTimeout, Meaning: "a process did not stop within --timeout (and --kill was not given)"},
		{Class: fault.Unhealthy, Meaning: "a process started but did not answer /health within --timeout"},
		{Class: fault.Down, Meaning: "status: a process is not running, or does not answer /health"},
		{Class: fault.Internal, Meaning: "internal error"},
		{Class: fault.Interrupted, Meaning: "interrupted"},
	},
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRootCmd(stdout, stderr)
	root.SetContext(ctx)
	return cli.Run(tool, root, args, stdout, stderr)
}

// options are synctl's flags. They are the root's persistent flags, so
// that they go before the action (Synapse's order: synctl -w F start
// CONFIG) or after it.
type options struct {
	worker      string
	allDir      string
	noDaemonize bool
	python      string
	homeserver  string
	timeout     time.Duration
	kill        bool
	noWait      bool
	json        bool
	stdout      io.Writer
	stderr      io.Writer
}

func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	o := &options{stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:   "synctl [-w WORKERCONFIG | -a WORKERDIR] [--no-daemonize] {start|stop|restart|status} [CONFIG]",
		Short: "Start, stop and restart a homeserver's main process and workers",
		Long: `synctl controls a homeserver's processes through their pid files, with the
arguments of Synapse's synctl. CONFIG (default homeserver.yaml) may be a file or
a directory of *.yaml files. With -w it acts on one worker only; with -a on
every *.yaml of a directory (the main process too if one of them says
worker_app: synapse.app.homeserver). Flags go before or after the action.

Order: start the main process, then the workers; stop the workers, then the
main process. start waits for each process to answer /health on its first HTTP
listener (--no-wait skips); stop waits up to --timeout for each process to exit,
then names the ones that did not (--kill sends SIGKILL to them). Stale and
recycled pid files are detected; zombies count as stopped.

A real Synapse is started, as PY -m <worker_app> -c CONFIG [-c WORKERCONFIG]
--daemonize, with the Python of the Synapse installation: --python PY, else
$SYNAPSE_PYTHON (or $SYNCTL_PYTHON), else the interpreter of the synapse
package on PATH (the #! line of its update_synapse_database, synapse_homeserver
or synctl script). Without one, the homeserver binary next to synctl or on PATH
is started.

` + tool.ExitHelp(),
		Args: cli.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			return cli.Usagef("an action is required: start, stop, restart or status")
		},
	}
	f := root.PersistentFlags()
	f.StringVarP(&o.worker, "worker", "w", "", "act on this worker config only")
	f.StringVarP(&o.allDir, "all-processes", "a", "", "act on every *.yaml worker config in this directory")
	f.BoolVar(&o.noDaemonize, "no-daemonize", false, "run the process in the foreground (synctl waits for it to exit)")
	f.StringVar(&o.python, "python", "", "start real Synapse with this Python (default: $SYNAPSE_PYTHON, else the synapse installed on PATH)")
	f.StringVar(&o.homeserver, "homeserver", "", "the homeserver binary (default: next to synctl, then PATH)")
	f.DurationVar(&o.timeout, "timeout", 60*time.Second, "how long to wait for a process to become healthy or to exit")
	f.BoolVar(&o.kill, "kill", false, "stop: send SIGKILL to processes still running after --timeout")
	f.BoolVar(&o.noWait, "no-wait", false, "start: do not wait for /health")
	f.BoolVar(&o.json, "json", false, "status: print JSON")
	root.AddCommand(newStartCmd(o), newStopCmd(o), newRestartCmd(o), newStatusCmd(o))
	complete.Add(root)
	return root
}

// plan checks the flags and reads the processes to act on from the configs.
func (o *options) plan(args []string) (proc.Plan, error) {
	if o.worker != "" && o.allDir != "" {
		return proc.Plan{}, cli.Usagef(`cannot use "--worker" with "--all-processes"`)
	}
	if o.noDaemonize && o.allDir != "" {
		return proc.Plan{}, cli.Usagef(`cannot use "--no-daemonize" with "--all-processes"`)
	}
	config := "homeserver.yaml"
	if len(args) == 1 {
		config = args[0]
	}
	return proc.Discover(proc.Selection{Config: config, Worker: o.worker, AllDir: o.allDir})
}

// supervisor is the supervisor the flags describe, reporting to out.
func (o *options) supervisor(out *printer) *proc.Supervisor {
	py := synapse.ResolvePython(o.python)
	if strings.HasPrefix(py.From, "PATH") {
		// A Synapse merely installed on PATH does not displace the engine:
		// it is started only when no engine binary is found.
		if _, err := proc.FindEngine(o.homeserver); err == nil {
			py = synapse.Python{}
		}
	}
	python := py.Path
	return &proc.Supervisor{
		Launcher: proc.Launcher{Python: python, Homeserver: o.homeserver, NoDaemonize: o.noDaemonize,
			Stdin: os.Stdin, Stdout: o.stdout, Stderr: o.stderr},
		Timeout: o.timeout, Kill: o.kill, NoWait: o.noWait, Progress: out.event,
	}
}

// actionCmd is the shape of start, stop and restart: [CONFIG], the plan,
// one supervisor call.
func actionCmd(o *options, use, short string, act func(context.Context, *proc.Supervisor, proc.Plan) error) *cobra.Command {
	return &cobra.Command{
		Use:   use + " [CONFIG]",
		Short: short,
		Args:  cli.RangeArgs(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pl, err := o.plan(args)
			if err != nil {
				return err
			}
			return act(cmd.Context(), o.supervisor(newPrinter(o.stdout, o.stderr)), pl)
		},
	}
}
