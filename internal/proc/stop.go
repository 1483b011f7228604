package proc

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"
)

type stopping struct {
	p   Process
	pid int
}

// Stop sends SIGTERM to the plan's running processes, the workers first,
// and waits up to Timeout for them to exit; with Kill, those still running
// then get SIGKILL. Stale pid files are removed, and a pid naming another
// program is never signalled. A pid file naming another homeserver process
// is reported (a *SharedPidFileError) after the others were stopped.
func (s *Supervisor) Stop(ctx context.Context, pl Plan) error {
	var other error
	var waiting []stopping
	for _, p := range pl.StopOrder() {
		v := HomeserverRunning(p.Target())
		if err := v.Conflict(); err != nil {
			other = withProcess(err, p)
			continue
		}
		if v.State != Running {
			s.notRunning(p, v)
			continue
		}
		if err := syscall.Kill(v.Pid, syscall.SIGTERM); err != nil {
			if errors.Is(err, syscall.ESRCH) {
				s.emit(Event{Kind: Vanished, Process: p, Pid: v.Pid})
				continue
			}
			s.emit(Event{Kind: SignalFailed, Process: p, Pid: v.Pid, Err: err})
			if errors.Is(err, syscall.EPERM) {
				return fmt.Errorf("%w: stop %s (pid %d)", ErrPermission, p.App, v.Pid)
			}
			return fmt.Errorf("stop %s: %w", p.App, err)
		}
		s.emit(Event{Kind: Signalled, Process: p, Pid: v.Pid})
		waiting = append(waiting, stopping{p: p, pid: v.Pid})
	}
	if err := s.wait(ctx, waiting); err != nil {
		return err
	}
	return other
}

// notRunning reports a process found not running, and removes its pid file
// when that file is wrong.
func (s *Supervisor) notRunning(p Process, v Verdict) {
	switch v.State {
	case NoPidFile:
		s.emit(Event{Kind: PidFileMissing, Process: p})
		return
	case BadPidFile:
		s.emit(Event{Kind: PidFileInvalid, Process: p, Err: v.PidErr})
	case Stale:
		s.emit(Event{Kind: StalePidFile, Process: p, Pid: v.Pid})
	case Recycled:
		s.emit(Event{Kind: RecycledPid, Process: p, Pid: v.Pid, Cmdline: v.Cmdline})
	}
	_ = os.Remove(p.PidFile)
}

// wait waits for the signalled processes to exit, killing those left at
// the deadline when asked to.
func (s *Supervisor) wait(ctx context.Context, waiting []stopping) error {
	if len(waiting) == 0 {
		return nil
	}
	s.emit(Event{Kind: Waiting})
	deadline := time.Now().Add(s.Timeout)
	for len(waiting) > 0 && time.Now().Before(deadline) {
		var still []stopping
		for _, w := range waiting {
			if Alive(w.pid) {
				still = append(still, w)
			}
		}
		waiting = still
		if len(waiting) > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	var names []string
	for _, w := range waiting {
		if s.Kill {
			_ = syscall.Kill(w.pid, syscall.SIGKILL)
			for i := 0; i < 250 && Alive(w.pid); i++ {
				time.Sleep(20 * time.Millisecond)
			}
			_ = os.Remove(w.p.PidFile)
			s.emit(Event{Kind: Killed, Process: w.p, Pid: w.pid, Timeout: s.Timeout})
			continue
		}
		s.emit(Event{Kind: StopTimedOut, Process: w.p, Pid: w.pid, Timeout: s.Timeout})
		names = append(names, fmt.Sprintf("%s (pid %d)", w.p.App, w.pid))
	}
	if len(names) > 0 {
		return fmt.Errorf("%w within %s: %s", ErrStopTimeout, s.Timeout, strings.Join(names, ", "))
	}
	s.emit(Event{Kind: AllExited})
	return nil
}
