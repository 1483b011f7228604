package proc

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"

	"hsops/internal/fault"
)

// daemonEnv tells a re-executed process that it is the daemon child and
// which file descriptor reports its start-up to the parent.
const daemonEnv = "HSOPS_HOMESERVER_DAEMON"

// Daemonize re-executes this program with args, detached (a new session),
// and waits on a pipe until the child reports that it is ready (nil) or
// why it failed: its error, with its class and hint, as if it were this
// process's. logFile is named when the child dies without a word.
func Daemonize(ctx context.Context, args []string, logFile string) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), daemonEnv+"=3")
	cmd.ExtraFiles = []*os.File{w}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		w.Close()
		r.Close()
		return fmt.Errorf("start daemon: %w", err)
	}
	w.Close()
	lines := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(r).ReadString('\n')
		lines <- strings.TrimSpace(line)
	}()
	var line string
	select {
	case line = <-lines:
	case <-ctx.Done():
		// The child goes on starting; it is ours no more.
		r.Close()
		pid := cmd.Process.Pid
		_ = cmd.Process.Release()
		return fmt.Errorf("waiting for the daemon (pid %d) to start; it goes on starting, see %s: %w", pid, logFile, ctx.Err())
	}
	r.Close()
	if line == "READY" {
		return cmd.Process.Release()
	}
	if msg, ok := strings.CutPrefix(line, "ERROR "); ok {
		_ = cmd.Wait()
		return decodeError(msg)
	}
	err = cmd.Wait()
	return fault.Errorf(fault.Internal, "see its log: "+logFile, "the homeserver exited during start-up (%v)", err)
}

// Ready is the daemon child's end of the pipe to its parent.
type Ready struct{ f *os.File }

// DaemonChild returns the pipe to the parent when this process was started
// by Daemonize (ok false otherwise).
func DaemonChild() (r *Ready, ok bool) {
	s := os.Getenv(daemonEnv)
	if s == "" {
		return nil, false
	}
	fd, err := strconv.Atoi(s)
	if err != nil {
		return nil, false
	}
	return &Ready{f: os.NewFile(uintptr(fd), "ready")}, true
}

// Report tells the parent the outcome of start-up (nil: ready) and closes
// the pipe.
func (r *Ready) Report(err error) {
	if err == nil {
		fmt.Fprintln(r.f, "READY")
	} else {
		fmt.Fprintf(r.f, "ERROR %s\n", encodeError(err))
	}
	r.f.Close()
}

// Detach points stdout and stderr at log and stdin at /dev/null, as a
// daemon's.
func Detach(log *os.File) {
	if log != nil {
		_ = syscall.Dup2(int(log.Fd()), 1)
		_ = syscall.Dup2(int(log.Fd()), 2)
	}
	if devnull, err := os.Open(os.DevNull); err == nil {
		_ = syscall.Dup2(int(devnull.Fd()), 0)
	}
}

// encodeError writes an error on one line: its class, its message, and its
// hint after \x1f (lines separated by \x1f).
func encodeError(err error) string {
	msg := strings.ReplaceAll(err.Error(), "\n", " ")
	if hint := fault.HintOf(err); hint != "" {
		msg += "\x1fhint: " + strings.ReplaceAll(hint, "\n", "\x1f")
	}
	return fault.ClassOf(err).String() + " " + msg
}

func decodeError(s string) error {
	name, msg, _ := strings.Cut(s, " ")
	class, _ := fault.ParseClass(name)
	hint := ""
	if m, rest, ok := strings.Cut(msg, "\x1fhint: "); ok {
		msg, hint = m, strings.ReplaceAll(rest, "\x1f", "\n")
	}
	return fault.New(class, msg, hint)
}
