// Command synctl starts, stops and restarts a homeserver's main process and
// workers through their pid files, like Synapse's synctl, and waits for the
// truth: a process counts as started once it answers /health, and as stopped
// once it has exited.
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
	"time"

	"github.com/spf13/cobra"

	"hsops/internal/cli"
	"hsops/internal/config"
)

// Exit codes, documented in --help and README. 1 keeps Synapse's meaning
// (a process failed to start).
const (
	exitOK        = 0
	exitStart     = 1
	exitUsage     = 2
	exitConfig    = 3
	exitStop      = 4
	exitPerm      = 5
	exitUnhealthy = 6
	exitDown      = 7
	exitInternal  = 70
)

const exitCodesHelp = `Exit codes:
  0   every requested operation succeeded (already running / not running count as success)
  1   a process failed to start (its reason is printed)
  2   usage error
  3   configuration error (missing config, worker file or directory, pid_file, worker_app)
  4   a process did not stop within --timeout (and --kill was not given)
  5   not permitted to signal a process
  6   a process started but did not answer /health within --timeout
  7   status: a process is not running, or does not answer /health
  70  internal error`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return cli.Run(cli.Tool{Name: "synctl", UsageCode: exitUsage, InternalCode: exitInternal, Classify: classify}, newRootCmd(ctx, stdout, stderr), args, stdout, stderr)
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

` + exitCodesHelp,
		Args: cobra.RangeArgs(1, 2),
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
	errConfig    = errors.New("configuration error")
	errStart     = errors.New("failed to start")
	errDown      = errors.New("not all processes are up")
	errStop      = errors.New("did not stop")
	errPerm      = errors.New("operation not permitted")
	errUnhealthy = errors.New("not healthy")
)

func classify(err error) (int, string, bool) {
	switch {
	case errors.Is(err, config.ErrNotFound), errors.Is(err, config.ErrInvalid), errors.Is(err, errConfig):
		return exitConfig, "", true
	case errors.Is(err, errDown):
		return exitDown, "synctl start <config> starts what is stopped", true
	case errors.Is(err, errStart):
		return exitStart, "its reason is printed above; for more, read its log (the config's log_config, else homeserver.log next to the config), or run synctl with --no-daemonize", true
	case errors.Is(err, errStop):
		return exitStop, "wait and run synctl stop again, or add --kill to send SIGKILL after --timeout", true
	case errors.Is(err, errPerm):
		return exitPerm, "run synctl as the user that runs the homeserver", true
	case errors.Is(err, errUnhealthy):
		return exitUnhealthy, "the process is running but not answering: check its log", true
	}
	return 0, "", false
}

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
