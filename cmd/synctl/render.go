package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"

	"hsops/internal/cli"
	"hsops/internal/proc"
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

const cacheFactorDeprecation = `Setting 'synctl_cache_factor' in the config is deprecated. Instead, please do
one of the following:
 - Either set the environment variable 'SYNAPSE_CACHE_FACTOR'
 - or set 'caches.global_factor' in the homeserver config.
--------------------------------------------------------------------------------`

// event renders a step of the supervisor, in Synapse's synctl's words
// where it has some.
func (p *printer) event(e proc.Event) {
	app := e.Process.App
	switch e.Kind {
	case proc.PidFileMissing:
		p.say(yellow, "No running worker of %s found (from %s)\nThe process might be managed by another controller (e.g. systemd)", app, e.Process.PidFile)
	case proc.PidFileInvalid:
		p.say(yellow, "%s not running: %v (removed the pid file)", app, e.Err)
	case proc.StalePidFile:
		p.say(yellow, "%s not running (removed stale pid file %s naming pid %d)", app, e.Process.PidFile, e.Pid)
	case proc.RecycledPid:
		p.say(yellow, "%s not running: pid file %s names pid %d, which is now another program (%s); not signalling it (removed the stale pid file)", app, e.Process.PidFile, e.Pid, e.Cmdline)
	case proc.Vanished:
		p.say(yellow, "%s not running", app)
	case proc.SignalFailed:
		if errors.Is(e.Err, syscall.EPERM) {
			p.complain("Cannot stop %s: Operation not permitted", app)
		} else {
			p.complain("Cannot stop %s: %v", app, e.Err)
		}
	case proc.Signalled:
		p.say(green, "stopped %s", app)
	case proc.Waiting:
		p.say("", "Waiting for processes to exit...")
	case proc.Killed:
		p.say(yellow, "killed %s (pid %d): it did not stop within %s", app, e.Pid, e.Timeout)
	case proc.StopTimedOut:
		p.complain("%s (pid %d) did not stop within %s", app, e.Pid, e.Timeout)
	case proc.AllExited:
		p.say("", "All processes exited")
	default:
		p.startEvent(e)
	}
}

func (p *printer) startEvent(e proc.Event) {
	name := e.Process.Name()
	switch e.Kind {
	case proc.AlreadyRunning:
		p.say("", "%s already running (pid %d)", e.Process.App, e.Pid)
	case proc.AlreadyStarting:
		p.say("", "%s already starting (pid %d, not yet in its pid file): waiting for it", e.Process.App, e.Pid)
	case proc.CacheFactorDeprecated:
		p.say("", "%s", cacheFactorDeprecation)
	case proc.Foreground:
		p.say(green, "starting %s in the foreground", name)
	case proc.Exited:
		p.complain("%s exited: %v", name, e.Err)
	case proc.StartFailed:
		p.complain("%s failed to start (exit code: %d). Check the Synapse logfile, or run synctl with --no-daemonize.", name, e.ExitCode)
		if e.Output != "" {
			p.complain("%s", indent(e.Output))
		}
		if e.ExitCode == -1 {
			p.complain("    %v", e.Err)
		}
	case proc.Started:
		switch {
		case e.Healthy:
			p.say(green, "started %s in %.2fs (healthy: %s)", name, e.Elapsed.Seconds(), e.Process.HealthURL)
		case e.Process.HealthURL == "":
			p.say(green, "started %s (no HTTP listener to check)", name)
		default:
			p.say(green, "started %s", name)
		}
	case proc.Unhealthy:
		p.complain("%s started (pid %d) but did not answer %s within %s: %v", name, e.Pid, e.Process.HealthURL, e.Timeout, e.Err)
	}
}
