// Command synctl starts, stops and restarts a homeserver's main process and
// workers through their pid files, like Synapse's synctl, and waits for the
// truth: a process counts as started once it answers /health, and as stopped
// once it has exited.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"hsops/internal/cli"
	"hsops/internal/fault"
)

// tool is synctl's exit table; 1 and 2 keep Synapse's synctl's meanings.
var tool = cli.Tool{
	Name: "synctl",
	OK:   "every requested operation succeeded (already running / not running count as success)",
	Exits: []cli.Exit{
		{Class: fault.StartFailed, Meaning: "a process failed to start (its reason is printed)"},
		{Class: fault.Usage, Meaning: "usage error"},
		{Class: fault.Config, Meaning: "configuration error (missing config, worker file or directory, pid_file, worker_app;\na pid file naming another homeserver process)"},
		{Class: fault.Permission, Meaning: "not permitted to signal a process"},
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
	return cli.Run(tool, newRootCmd(ctx, stdout, stderr), args, stdout, stderr)
}

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
	out         *printer
}

func newRootCmd(ctx context.Context, stdout, stderr io.Writer) *cobra.Command {
	o := &options{}
	root := &cobra.Command{
		Use:   "synctl [-w WORKERCONFIG | -a WORKERDIR] [--no-daemonize] {start|stop|restart|status} [CONFIG]",
		Short: "Start, stop and restart a homeserver's main process and workers",
		Long: `synctl controls a homeserver's processes through their pid files, with the
arguments of Synapse's synctl. CONFIG (default homeserver.yaml) may be a file or
a directory of *.yaml files. With -w it acts on one worker only; with -a on
every *.yaml of a directory (the main process too if one of them says
worker_app: synapse.app.homeserver).

Order: start the main process, then the workers; stop the workers, then the
main process. start waits for each process to answer /health on its first HTTP
listener (--no-wait skips); stop waits up to --timeout for each process to exit,
then names the ones that did not (--kill sends SIGKILL to them). Stale and
recycled pid files are detected; zombies count as stopped.

Processes are started with the homeserver binary next to synctl or on PATH;
with --python PATH (or SYNCTL_PYTHON) a real Synapse is started instead, as
PATH -m <worker_app> -c CONFIG [-c WORKERCONFIG] --daemonize.

` + tool.ExitHelp(),
		Args: cli.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.out = newPrinter(stdout, stderr)
			action := args[0]
			configPath := "homeserver.yaml"
			if len(args) == 2 {
				configPath = args[1]
			}
			if o.python == "" {
				o.python = os.Getenv("SYNCTL_PYTHON")
			}
			return runAction(ctx, o, action, configPath)
		},
	}
	f := root.Flags()
	f.StringVarP(&o.worker, "worker", "w", "", "act on this worker config only")
	f.StringVarP(&o.allDir, "all-processes", "a", "", "act on every *.yaml worker config in this directory")
	f.BoolVar(&o.noDaemonize, "no-daemonize", false, "run the process in the foreground (synctl waits for it to exit)")
	f.StringVar(&o.python, "python", "", "start real Synapse with this Python (also SYNCTL_PYTHON)")
	f.StringVar(&o.homeserver, "homeserver", "", "the homeserver binary (default: next to synctl, then PATH)")
	f.DurationVar(&o.timeout, "timeout", 60*time.Second, "how long to wait for a process to become healthy or to exit")
	f.BoolVar(&o.kill, "kill", false, "stop: send SIGKILL to processes still running after --timeout")
	f.BoolVar(&o.noWait, "no-wait", false, "start: do not wait for /health")
	f.BoolVar(&o.json, "json", false, "status: print JSON")
	return root
}

var (
	errConfig = fault.New(fault.Config, "configuration error", "")
	errStart  = fault.New(fault.StartFailed, "failed to start",
		"its reason is printed above; for more, read its log (the config's log_config, else homeserver.log next to the config), or run synctl with --no-daemonize")
	errDown      = fault.New(fault.Down, "not all processes are up", "synctl start <config> starts what is stopped")
	errStop      = fault.New(fault.StopTimeout, "did not stop", "wait and run synctl stop again, or add --kill to send SIGKILL after --timeout")
	errPerm      = fault.New(fault.Permission, "operation not permitted", "run synctl as the user that runs the homeserver")
	errUnhealthy = fault.New(fault.Unhealthy, "not healthy", "the process is running but not answering: check its log")
)

// printer writes synctl's messages, coloured only on a terminal and when
// NO_COLOR is unset.
type printer struct {
	stdout, stderr io.Writer
	colorOut       bool
	colorErr       bool
}

func newPrinter(stdout, stderr io.Writer) *printer {
	noColor := os.Getenv("NO_COLOR") != ""
	return &printer{stdout: stdout, stderr: stderr,
		colorOut: !noColor && cli.IsTerminal(stdout), colorErr: !noColor && cli.IsTerminal(stderr)}
}

const (
	green  = "\x1b[1;32m"
	yellow = "\x1b[1;33m"
	red    = "\x1b[1;31m"
	reset  = "\x1b[m"
)

func (p *printer) say(color, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if p.colorOut && color != "" {
		msg = color + msg + reset
	}
	fmt.Fprintln(p.stdout, msg)
}

func (p *printer) complain(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if p.colorErr {
		msg = red + msg + reset
	}
	fmt.Fprintln(p.stderr, msg)
}

func indent(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i := range lines {
		lines[i] = "    " + lines[i]
	}
	return strings.Join(lines, "\n")
}
