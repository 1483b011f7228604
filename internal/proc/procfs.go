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
// cannot be read).
func StartTime(pid int) (time.Time, bool) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return time.Time{}, false
	}
	s := string(data)
	i := strings.LastIndex(s, ")")
	if i < 0 {
		return time.Time{}, false
	}
	fields := strings.Fields(s[i+1:])
	// Fields after the command: state is [0], starttime is field 22 of the
	// whole line, so [19] here.
	if len(fields) < 20 {
		return time.Time{}, false
	}
	ticks, err := strconv.ParseInt(fields[19], 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	boot, ok := bootTime()
	if !ok {
		return time.Time{}, false
	}
	const clockTicks = 100 // sysconf(_SC_CLK_TCK) on Linux
	return boot.Add(time.Duration(ticks) * time.Second / clockTicks), true
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
