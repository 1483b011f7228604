package proc

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
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

// WritePidFile writes the pid atomically (temporary file, then rename),
// mode 0644, so that a reader never sees a half-written pid.
func WritePidFile(path string, pid int) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, ".pid-*")
	if err != nil {
		return fmt.Errorf("write pid file %q: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := fmt.Fprintf(tmp, "%d\n", pid); err != nil {
		tmp.Close()
		return fmt.Errorf("write pid file %q: %w", path, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write pid file %q: %w", path, err)
	}
	return nil
}

// RemovePidFile removes the pid file if it still holds pid (a process
// that took it over since keeps it).
func RemovePidFile(path string, pid int) {
	data, err := os.ReadFile(path)
	if err == nil && string(data) == strconv.Itoa(pid)+"\n" {
		_ = os.Remove(path)
	}
}

// absPath makes a path absolute, keeping it as given when it cannot.
func absPath(p string) string {
	if abs, err := filepath.Abs(p); err == nil {
		return abs
	}
	return p
}
