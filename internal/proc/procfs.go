package proc

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Alive reports whether a process exists and is not a zombie. A process we
// may not signal (EPERM) exists.
func Alive(pid int) bool {
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

// parentPid is the pid of a process's parent, from /proc (0 when it
// cannot be read).
func parentPid(pid int) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(data)
	i := strings.LastIndex(s, ")")
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}

// Cmdline returns the command line of a process (arguments joined by
// spaces), or "" when it cannot be read.
func Cmdline(pid int) string {
	return strings.TrimSpace(strings.Join(Args(pid), " "))
}

// Args returns the arguments a process was started with (its argv, from
// the NUL-separated /proc/<pid>/cmdline: an argument holding a space stays
// one), or nil when they cannot be read.
func Args(pid int) []string {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || len(data) == 0 {
		return nil
	}
	return strings.Split(strings.TrimSuffix(string(data), "\x00"), "\x00")
}

// looksLikeHomeserver says whether a command line can be a homeserver
// process: the engine, Synapse, or Python running either. An unreadable
// command line ("") gets the benefit of the doubt.
func looksLikeHomeserver(cmdline string) bool {
	return cmdline == "" || strings.Contains(cmdline, "homeserver") || strings.Contains(cmdline, "synapse") || strings.Contains(cmdline, "python")
}

// ConfigArgs returns the config files a homeserver process was started with
// (-c F, -cF, --config-path F, --config-path=F), made absolute against its
// working directory; ok is false when there are none, they cannot be read,
// or one no longer resolves (a process that changed directory after start,
// as Synapse's daemonize does, keeps relative paths that now mislead).
func ConfigArgs(pid int) (paths []string, ok bool) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return nil, false
	}
	cwd, _ := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
	args := strings.Split(strings.TrimRight(string(data), "\x00"), "\x00")
	for i := 0; i < len(args); i++ {
		a, v := args[i], ""
		switch {
		case a == "-c" || a == "--config-path":
			if i+1 < len(args) {
				i++
				v = args[i]
			}
		case strings.HasPrefix(a, "--config-path="):
			v = strings.TrimPrefix(a, "--config-path=")
		case strings.HasPrefix(a, "-c") && len(a) > 2 && !strings.HasPrefix(a, "--"):
			v = a[2:]
		}
		if v == "" {
			continue
		}
		if !filepath.IsAbs(v) && cwd != "" {
			v = filepath.Join(cwd, v)
		}
		if _, err := os.Stat(v); err != nil {
			return nil, false
		}
		paths = append(paths, v)
	}
	return paths, len(paths) > 0
}

// SameFiles reports whether two lists of paths name the same files, in any
// order.
func SameFiles(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	used := make([]bool, len(b))
	for _, x := range a {
		sx, err := os.Stat(x)
		if err != nil {
			return false
		}
		found := false
		for j, y := range b {
			if used[j] {
				continue
			}
			if sy, err := os.Stat(y); err == nil && os.SameFile(sx, sy) {
				used[j], found = true, true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// StartTime returns when a process started, from /proc (ok false when it
// cannot be read). It is computed from the boot time, so it moves when the
// wall clock is stepped; StartTicks does not.
func StartTime(pid int) (time.Time, bool) {
	ticks, ok := StartTicks(pid)
	if !ok {
		return time.Time{}, false
	}
	boot, ok := bootTime()
	if !ok {
		return time.Time{}, false
	}
	const clockTicks = 100 // sysconf(_SC_CLK_TCK) on Linux
	return boot.Add(time.Duration(ticks) * time.Second / clockTicks), true
}

// StartTicks returns when a process started, in clock ticks since boot
// (field 22 of /proc/<pid>/stat): with its pid, it names one process for
// the life of the system.
func StartTicks(pid int) (int64, bool) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	s := string(data)
	i := strings.LastIndex(s, ")")
	if i < 0 {
		return 0, false
	}
	fields := strings.Fields(s[i+1:])
	// Fields after the command: state is [0], starttime is field 22 of the
	// whole line, so [19] here.
	if len(fields) < 20 {
		return 0, false
	}
	ticks, err := strconv.ParseInt(fields[19], 10, 64)
	if err != nil {
		return 0, false
	}
	return ticks, true
}

func bootTime() (time.Time, bool) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return time.Time{}, false
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "btime ") {
			n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimPrefix(line, "btime ")), 10, 64)
			if err != nil {
				return time.Time{}, false
			}
			return time.Unix(n, 0), true
		}
	}
	return time.Time{}, false
}

// Gone reports whether the process that had pid and started at ticks (as
// StartTicks gave it; 0 when it could not be read) has really exited: no such process, the pid now names a process started at another
// time, or a zombie whose every thread has ended. A zombie whose other
// threads still run is not gone yet: the thread that called exit may end
// first, while the others still hold the process's open files (and the
// locks SQLite keeps on them).
func Gone(pid int, ticks int64) bool {
	if pid <= 0 {
		return true
	}
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return true
	}
	if ticks > 0 {
		if now, ok := StartTicks(pid); ok && now != ticks {
			return true
		}
	}
	state, ok := procState(pid)
	if !ok {
		// Without /proc only the signal answers: it is there.
		return false
	}
	if state != "Z" && state != "X" {
		return false
	}
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	return err != nil || len(tasks) <= 1
}
