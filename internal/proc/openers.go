package proc

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Openers lists the other processes that have a file open, as "pid N:
// command line" (best effort, from /proc; empty where /proc is not).
func Openers(path string) []string {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil
	}
	target, err := os.Stat(abs)
	if err != nil {
		return nil
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/fd/*")
	self := strconv.Itoa(os.Getpid())
	seen := map[string]bool{}
	var out []string
	for _, fd := range procs {
		pid := strings.Split(fd, "/")[2]
		if pid == self || seen[pid] {
			continue
		}
		st, err := os.Stat(fd)
		if err != nil || !os.SameFile(st, target) {
			continue
		}
		seen[pid] = true
		cmd, _ := os.ReadFile("/proc/" + pid + "/cmdline")
		out = append(out, fmt.Sprintf("pid %s: %s", pid, strings.TrimSpace(strings.ReplaceAll(string(cmd), "\x00", " "))))
	}
	sort.Strings(out)
	return out
}
