package proc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"hsops/internal/fault"
)

// The supervisor's errors; each names the processes concerned.
var (
	ErrStartFailed = fault.New(fault.StartFailed, "failed to start",
		"its reason is printed above; for more, read its log (the config's log_config, else homeserver.log in the working directory), or run synctl with --no-daemonize")
	ErrUnhealthy   = fault.New(fault.Unhealthy, "not healthy", "the process is running but not answering: check its log")
	ErrStopTimeout = fault.New(fault.StopTimeout, "did not stop", "wait and run synctl stop again, or add --kill to send SIGKILL after --timeout")
	ErrPermission  = fault.New(fault.Permission, "operation not permitted", "run synctl as the user that runs the homeserver")
	ErrDown        = fault.New(fault.Down, "not all processes are up", "synctl start <config> starts what is stopped")
	ErrNoBinary    = fault.New(fault.Config, "cannot find the homeserver binary next to synctl or on PATH",
		"install it, pass --homeserver PATH, or start real Synapse with --python PATH")
)

// EventKind says what happened to a process.
type EventKind int

// The events of Start and Stop, in the order they can happen.
const (
	// AlreadyRunning: start found the process running (Pid).
	AlreadyRunning EventKind = iota
	// AlreadyStarting: start found the process starting, not yet in its
	// pid file (Pid), and waits for it.
	AlreadyStarting
	// CacheFactorDeprecated: the process uses synctl_cache_factor.
	CacheFactorDeprecated
	// Foreground: the process runs in the foreground until it exits.
	Foreground
	// Exited: the foreground process ended with an error (Err).
	Exited
	// StartFailed: the launch failed (ExitCode, -1 when it did not run;
	// Output is what it printed; Err).
	StartFailed
	// Started: the process started (Elapsed; Healthy when it answered its
	// /health).
	Started
	// Unhealthy: started but did not answer /health in time (Pid, Err).
	Unhealthy
	// PidFileMissing: stop found no pid file.
	PidFileMissing
	// PidFileInvalid: stop found a pid file without a pid (Err); removed.
	PidFileInvalid
	// StalePidFile: the pid file names a process that is gone (Pid);
	// removed.
	StalePidFile
	// RecycledPid: the pid file names another program (Pid, Cmdline); not
	// signalled, the pid file removed.
	RecycledPid
	// Vanished: the process exited before it could be signalled.
	Vanished
	// SignalFailed: SIGTERM could not be sent (Err).
	SignalFailed
	// Signalled: SIGTERM was sent (Pid).
	Signalled
	// Waiting: stop waits for the signalled processes to exit.
	Waiting
	// Killed: the process did not stop within Timeout and was killed (Pid).
	Killed
	// StopTimedOut: the process did not stop within Timeout (Pid).
	StopTimedOut
	// AllExited: every signalled process has exited.
	AllExited
)

// Event is one step of Start or Stop. Process is zero for Waiting and
// AllExited.
type Event struct {
	Kind     EventKind
	Process  Process
	Pid      int
	Cmdline  string
	ExitCode int
	Output   string
	Err      error
	Elapsed  time.Duration
	Healthy  bool
	Timeout  time.Duration
}

// Launcher says how processes are started.
type Launcher struct {
	// Python, when set, starts real Synapse: PYTHON -m <app> -c ... --daemonize.
	Python string
	// Homeserver is the engine's binary ("": next to this program, then
	// on PATH).
	Homeserver string
	// NoDaemonize runs the process in the foreground and waits for it to
	// exit.
	NoDaemonize bool
	// Env is the base environment of the processes (nil: this process's).
	Env []string
	// Stdin, Stdout and Stderr are a foreground process's.
	Stdin          io.Reader
	Stdout, Stderr io.Writer
}

// Supervisor starts, stops and inspects the processes of a plan.
type Supervisor struct {
	Launcher
	// Timeout bounds the wait for a process to answer /health or to exit.
	Timeout time.Duration
	// Kill sends SIGKILL to the processes still running after Timeout.
	Kill bool
	// NoWait skips the wait for /health.
	NoWait bool
	// Progress receives each event (nil: none).
	Progress func(Event)

	// started are the processes this supervisor started, by pid file (a
	// copy of the Supervisor made after a start shares them).
	started map[string]started
}

// started is a process a supervisor started: its pid and start time.
type started struct {
	pid   int
	ticks int64
}

func (s *Supervisor) emit(e Event) {
	if s.Progress != nil {
		s.Progress(e)
	}
}

// Restart stops the plan's processes, then starts them.
func (s *Supervisor) Restart(ctx context.Context, pl Plan) error {
	if err := s.Stop(ctx, pl); err != nil {
		return err
	}
	return s.Start(ctx, pl)
}

// Start starts the processes that are not running, the main process
// first, and waits for each to answer /health. It tries every process and
// then reports those that failed to start (ErrStartFailed), else those that
// are not healthy (ErrUnhealthy).
func (s *Supervisor) Start(ctx context.Context, pl Plan) error {
	var failed []string
	var unhealthy error
	permission := true
	for _, p := range pl.StartOrder() {
		if err := s.start(ctx, p); err != nil {
			if errors.Is(err, ErrUnhealthy) {
				unhealthy = err
				continue
			}
			if !errors.Is(err, ErrStartFailed) {
				return err
			}
			failed = append(failed, p.App)
			permission = permission && fault.ClassOf(err) == fault.Permission
		}
	}
	if len(failed) > 0 {
		err := fmt.Errorf("%w: %s", ErrStartFailed, strings.Join(failed, ", "))
		if permission {
			return fault.Wrap(fault.Permission, err, permissionHint)
		}
		return err
	}
	return unhealthy
}

// permissionHint is the hint of processes that could not start because a
// file they write is not writable by the user they run as.
const permissionHint = "its reason is printed above: run synctl as the user that owns the homeserver's files, or let that user write them"

// startFailed is the error of a process that failed to start with exit
// code code: an engine that refused for want of permission (its own
// reason names the file, its owner and the user) keeps that class, the
// same in synctl as in the homeserver; real Synapse exits 1 whatever the
// cause.
func (s *Supervisor) startFailed(p Process, code int) error {
	err := fmt.Errorf("%w: %s", ErrStartFailed, p.App)
	if s.Python == "" && code == fault.Permission.Code() {
		return fault.Wrap(fault.Permission, err, permissionHint)
	}
	return err
}

func (s *Supervisor) start(ctx context.Context, p Process) error {
	v := HomeserverRunning(p.Target())
	if err := v.Conflict(); err != nil {
		return withProcess(err, p)
	}
	if v.State == Running {
		s.emit(Event{Kind: AlreadyRunning, Process: p, Pid: v.Pid})
		return nil
	}
	if v.State == Starting {
		if done, err := s.awaitStarting(ctx, p, v); done {
			return err
		}
		if v = HomeserverRunning(p.Target()); v.State == Running {
			s.emit(Event{Kind: AlreadyRunning, Process: p, Pid: v.Pid})
			return nil
		}
	}
	cmd, err := s.command(p)
	if err != nil {
		return err
	}
	t0 := time.Now()
	if s.NoDaemonize {
		cmd.Stdin, cmd.Stdout, cmd.Stderr = s.Stdin, s.Stdout, s.Stderr
		s.emit(Event{Kind: Foreground, Process: p})
		if err := cmd.Run(); err != nil {
			s.emit(Event{Kind: Exited, Process: p, Err: err})
			code := -1
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			}
			return s.startFailed(p, code)
		}
		return nil
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		code := -1
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		}
		s.emit(Event{Kind: StartFailed, Process: p, ExitCode: code, Output: strings.TrimSpace(out.String()), Err: err})
		return s.startFailed(p, code)
	}
	s.remember(p)
	if s.NoWait || p.HealthURL == "" {
		s.emit(Event{Kind: Started, Process: p, Elapsed: time.Since(t0)})
		return nil
	}
	err = WaitHealthy(ctx, p.HealthURL, s.Timeout)
	// A daemon may write its pid file after its parent returned.
	s.remember(p)
	if err != nil {
		pid, _ := ReadPidFile(p.PidFile)
		s.emit(Event{Kind: Unhealthy, Process: p, Pid: pid, Err: err, Timeout: s.Timeout})
		return fmt.Errorf("%w: %s", ErrUnhealthy, p.App)
	}
	s.emit(Event{Kind: Started, Process: p, Elapsed: time.Since(t0), Healthy: true})
	return nil
}

// awaitStarting waits for a process another start left starting (no pid
// file names it yet: a start killed half-way): done once it answers its
// /health (nil) or does not within Timeout (ErrUnhealthy); not done when it
// exited first, so that this start launches it again. A second launch
// beside it would only find its database locked.
func (s *Supervisor) awaitStarting(ctx context.Context, p Process, v Verdict) (done bool, err error) {
	s.emit(Event{Kind: AlreadyStarting, Process: p, Pid: v.Pid})
	var procs []stopping
	for _, pid := range v.startingPids() {
		ticks, _ := StartTicks(pid)
		procs = append(procs, stopping{p: p, pid: pid, ticks: ticks})
	}
	t0 := time.Now()
	deadline := t0.Add(s.Timeout)
	for {
		if p.HealthURL != "" && WaitHealthy(ctx, p.HealthURL, 0) == nil {
			s.remember(p)
			s.emit(Event{Kind: Started, Process: p, Elapsed: time.Since(t0), Healthy: true})
			return true, nil
		}
		gone := true
		for _, w := range procs {
			gone = gone && Gone(w.pid, w.ticks)
		}
		if gone {
			return false, nil
		}
		if p.HealthURL == "" && HomeserverRunning(p.Target()).State == Running {
			s.emit(Event{Kind: Started, Process: p, Elapsed: time.Since(t0)})
			return true, nil
		}
		if time.Now().After(deadline) {
			s.emit(Event{Kind: Unhealthy, Process: p, Pid: v.Pid, Err: errors.New("still starting"), Timeout: s.Timeout})
			return true, fmt.Errorf("%w: %s", ErrUnhealthy, p.App)
		}
		select {
		case <-ctx.Done():
			return true, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// withProcess names the process a shared pid file belongs to.
func withProcess(err error, p Process) error {
	var shared *SharedPidFileError
	if errors.As(err, &shared) {
		shared.Process = p.Name()
	}
	return err
}

// command is the command that starts a process.
func (s *Supervisor) command(p Process) (*exec.Cmd, error) {
	var args []string
	for _, c := range p.Configs {
		args = append(args, "-c", c)
	}
	if !s.NoDaemonize {
		args = append(args, "--daemonize")
	}
	var cmd *exec.Cmd
	if s.Python != "" {
		cmd = exec.Command(s.Python, append([]string{"-m", p.App}, args...)...)
	} else {
		bin, err := s.binary()
		if err != nil {
			return nil, err
		}
		cmd = exec.Command(bin, args...)
	}
	if p.DeprecatedCacheFactor() {
		s.emit(Event{Kind: CacheFactorDeprecated, Process: p})
	}
	base := s.Env
	if base == nil {
		base = os.Environ()
	}
	cmd.Env = p.Env(base)
	return cmd, nil
}

// binary finds the engine: the Homeserver given, else next to this
// program, else on PATH.
func (s *Supervisor) binary() (string, error) { return FindEngine(s.Homeserver) }

// FindEngine finds the engine's binary: given if not "", else the
// homeserver next to this program, else on PATH; ErrNoBinary if none.
func FindEngine(given string) (string, error) {
	if given != "" {
		return given, nil
	}
	if exe, err := os.Executable(); err == nil {
		candidate := filepath.Join(filepath.Dir(exe), "homeserver")
		if st, err := os.Stat(candidate); err == nil && !st.IsDir() {
			return candidate, nil
		}
	}
	found, err := exec.LookPath("homeserver")
	if err != nil {
		return "", ErrNoBinary
	}
	return found, nil
}

// WaitHealthy polls a /health URL until it answers 200 OK, for at most
// timeout (one try when timeout is 0).
func WaitHealthy(ctx context.Context, url string, timeout time.Duration) error {
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(timeout)
	for {
		err := healthy(ctx, client, url)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(25 * time.Millisecond):
		}
	}
}

func healthy(ctx context.Context, client *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64))
	resp.Body.Close()
	if resp.StatusCode == 200 && strings.TrimSpace(string(body)) == "OK" {
		return nil
	}
	return fmt.Errorf("status %s", resp.Status)
}
