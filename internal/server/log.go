package server

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"hsops/internal/fault"
	"hsops/internal/writable"
)

// Logger writes one line per event to a file it can reopen (SIGHUP, for
// logrotate) or to a writer.
type Logger struct {
	mu   sync.Mutex
	path string
	f    *os.File
	w    io.Writer
	name string
}

// OpenLog opens (creating, appending) a log file.
func OpenLog(path, name string) (*Logger, error) {
	l := &Logger{path: path, name: name}
	if err := l.Reopen(); err != nil {
		return nil, err
	}
	return l, nil
}

// NewLogger logs to w (tests, --no-daemonize without a file).
func NewLogger(w io.Writer, name string) *Logger { return &Logger{w: w, name: name} }

// Path is the log file, or "" when logging to a writer.
func (l *Logger) Path() string { return l.path }

// File returns the open log file (nil when logging to a writer).
func (l *Logger) File() *os.File {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f
}

// Reopen closes and reopens the log file.
func (l *Logger) Reopen() error {
	if l.path == "" {
		return nil
	}
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return logFileError(l.path, err)
	}
	l.mu.Lock()
	old := l.f
	l.f, l.w = f, f
	l.mu.Unlock()
	if old != nil {
		old.Close()
	}
	return nil
}

// logFileError says why the log file cannot be opened: not writable by
// this user (the permission class), or no such directory (a config error).
func logFileError(path string, err error) error {
	if werr := writable.File(path, "log file"); werr != nil {
		return werr
	}
	if errors.Is(err, fs.ErrNotExist) {
		return fault.Errorf(fault.Config, "create that directory, or name another log file in <config> (the filename of the log_config's file handler)",
			"cannot open log file %q: its directory %q does not exist", path, filepath.Dir(path))
	}
	return fmt.Errorf("open log file %q: %w", path, err)
}

// Printf logs a line at a level.
func (l *Logger) Printf(level, format string, args ...any) {
	line := fmt.Sprintf("%s - %s - %s - %s\n", time.Now().UTC().Format("2006-01-02 15:04:05.000"), l.name, level, fmt.Sprintf(format, args...))
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.w != nil {
		_, _ = io.WriteString(l.w, line)
	}
}

// Infof logs at INFO.
func (l *Logger) Infof(format string, args ...any) { l.Printf("INFO", format, args...) }

// Errorf logs at ERROR.
func (l *Logger) Errorf(format string, args ...any) { l.Printf("ERROR", format, args...) }

// Close closes the file.
func (l *Logger) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f != nil {
		return l.f.Close()
	}
	return nil
}
