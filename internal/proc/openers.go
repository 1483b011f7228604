package proc

import (
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// openers lists the other processes that have a file open (best effort,
// from /proc; none where /proc is not), in pid order.
func openers(path string) []Holder {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil
	}
	target, err := os.Stat(abs)
	if err != nil {
		return nil
	}
	fds, _ := filepath.Glob("/proc/[0-9]*/fd/*")
	self := os.Getpid()
	seen := map[int]bool{}
	var out []Holder
	for _, fd := range fds {
		pid, err := strconv.Atoi(strings.Split(fd, "/")[2])
		if err != nil || pid == self || seen[pid] {
			continue
		}
		st, err := os.Stat(fd)
		if err != nil || !os.SameFile(st, target) {
			continue
		}
		seen[pid] = true
		args := Args(pid)
		h := Holder{Pid: pid, Cmdline: strings.TrimSpace(strings.Join(args, " ")), Args: args, File: abs}
		h.Since, _ = StartTime(pid)
		out = append(out, h)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Pid < out[j].Pid })
	return out
}
