// Package proc reads pid files and tells whether a process is alive, with
// the care a process controller needs: stale pid files, recycled pids and
// zombies.
package proc

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// ErrNoPidFile means the pid file does not exist.
var ErrNoPidFile = errors.New("no pid file")

// ReadPidFile returns the pid written in a pid file.
func ReadPidFile(path string) (int, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, fmt.Errorf("%w: %q", ErrNoPidFile, path)
	}
	if err != nil {
		return 0, fmt.Errorf("read pid file %q: %w", path, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("pid file %q does not hold a pid (%q)", path, strings.TrimSpace(string(data)))
	}
	return pid, nil
}

// Running reports whether a process exists and is not a zombie. A process
// we may not signal (EPERM) exists.
func Running(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	if err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	if state, ok := procState(pid); ok && (state == "Z" || state == "X") {
		return false
	}
	return true
}

// procState reads the state letter of /proc/<pid>/stat.
func procState(pid int) (string, bool) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", false
	}
	s := string(data)
	i := strings.LastIndex(s, ")")
	if i < 0 || i+2 >= len(s) {
		return "", false
	}
	return s[i+2 : i+3], true
}

// Cmdline returns the command line of a process (arguments joined by
// spaces), or "" when it cannot be read.
func Cmdline(pid int) string {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(strings.ReplaceAll(string(data), "\x00", " "))
}
