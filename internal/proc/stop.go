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

// stopping is a process signalled: its pid and its start time (clock
// ticks since boot, 0 when unknown), which together name it even after its
// pid file is gone and its pid is reused.
type stopping struct {
	p     Process
	pid   int
	ticks int64
}

// Stop sends SIGTERM to the plan's running processes, the workers first,
// and waits up to Timeout for them to exit; with Kill, those still running
// then get SIGKILL. A process is waited for by its pid and start time until
// it has really exited (every thread ended, its files closed), not by its
// pid file, which a process may remove before its end. Stale pid files are
// removed, and a pid naming another program is never signalled. A pid file
// naming another homeserver process is reported (a *SharedPidFileError)
// after the others were stopped.
func (s *Supervisor) Stop(ctx context.Context, pl Plan) error {
	var other error
	var waiting []stopping
	for _, p := range pl.StopOrder() {
		v := s.verdict(p)
		if err := v.Conflict(); err != nil {
			other = withProcess(err, p)
			continue
		}
		pids := []int{v.Pid}
		switch v.State {
		case Running:
		case Starting:
			pids = v.startingPids()
		default:
			s.notRunning(p, v)
			continue
		}
		for _, pid := range pids {
			w, err := s.signal(p, pid)
			if err != nil {
				return err
			}
			if w != nil {
				waiting = append(waiting, *w)
			}
		}
	}
	if err := s.wait(ctx, waiting); err != nil {
		return err
	}
	return other
}

// signal sends SIGTERM to a process of p; it returns what to wait for (nil
// when the process was gone already).
func (s *Supervisor) signal(p Process, pid int) (*stopping, error) {
	ticks, _ := StartTicks(pid)
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		if errors.Is(err, syscall.ESRCH) {
			s.emit(Event{Kind: Vanished, Process: p, Pid: pid})
			return nil, nil
		}
		s.emit(Event{Kind: SignalFailed, Process: p, Pid: pid, Err: err})
		if errors.Is(err, syscall.EPERM) {
			return nil, fmt.Errorf("%w: stop %s (pid %d)", ErrPermission, p.App, pid)
		}
		return nil, fmt.Errorf("stop %s: %w", p.App, err)
	}
	s.emit(Event{Kind: Signalled, Process: p, Pid: pid})
	return &stopping{p: p, pid: pid, ticks: ticks}, nil
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
			if !Gone(w.pid, w.ticks) {
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
			for i := 0; i < 250 && !Gone(w.pid, w.ticks); i++ {
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

// verdict is HomeserverRunning for a process of the plan, except that a
// process this supervisor started itself, and whose pid file still names
// it, is running whatever the pid file's age says: its start time is read
// from the boot clock and the pid file's from the wall clock, and a step
// of the wall clock (a virtual machine resumed, NTP) can make the process
// look younger than its own pid file, as a recycled pid would.
func (s *Supervisor) verdict(p Process) Verdict {
	v := HomeserverRunning(p.Target())
	if v.State != Recycled {
		return v
	}
	own, ok := s.started[p.PidFile]
	if !ok || own.pid != v.Pid {
		return v
	}
	if ticks, known := StartTicks(v.Pid); !known || ticks != own.ticks {
		return v
	}
	v.State = Running
	v.Holders = append([]Holder{{Pid: v.Pid, Cmdline: v.Cmdline, PidFile: p.PidFile}}, v.Holders...)
	return v
}

// remember notes the process a start left running (its pid file's pid and
// that process's start time), for verdict.
func (s *Supervisor) remember(p Process) {
	pid, err := ReadPidFile(p.PidFile)
	if err != nil {
		return
	}
	ticks, ok := StartTicks(pid)
	if !ok {
		return
	}
	if s.started == nil {
		s.started = map[string]started{}
	}
	s.started[p.PidFile] = started{pid: pid, ticks: ticks}
}
