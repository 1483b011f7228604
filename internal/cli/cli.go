// Package cli holds what the four commands share: running a cobra root,
// printing an error once with its hint, mapping errors to exit codes, and
// deciding between terminal, plain and JSON output.
package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"hsops/internal/buildinfo"
)

// Error carries an exit code and a hint (the exact command to run next).
type Error struct {
	Code int
	Err  error
	Hint string
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Fail wraps err with an exit code and a hint.
func Fail(code int, err error, hint string) *Error {
	return &Error{Code: code, Err: err, Hint: hint}
}

// Usage marks an error as a usage error; the code is the tool's usage code.
type Usage struct{ Err error }

func (u *Usage) Error() string { return u.Err.Error() }
func (u *Usage) Unwrap() error { return u.Err }

// Usagef builds a usage error.
func Usagef(format string, args ...any) error {
	return &Usage{Err: fmt.Errorf(format, args...)}
}

// Tool describes a command for Run.
type Tool struct {
	Name string
	// UsageCode is the exit code of usage errors.
	UsageCode int
	// InternalCode is the exit code of unexpected errors.
	InternalCode int
	// Classify maps an error to an exit code and hint; ok false means
	// "not recognised" (InternalCode is used).
	Classify func(err error) (code int, hint string, ok bool)
	// Hint, when set, rewrites every hint before it is printed (for
	// example to name the config the user gave).
	Hint func(string) string
}

// Run executes the root command with args and returns the exit code. The
// error, if any, is printed once to stderr as "<tool>: error: ..." with a
// "hint:" line when there is one.
func Run(t Tool, root *cobra.Command, args []string, stdout, stderr io.Writer) int {
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SilenceUsage = true
	root.SilenceErrors = true
	root.Version = buildinfo.Version()
	root.SetVersionTemplate(t.Name + " {{.Version}}\n")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &Usage{Err: err} })
	err := root.Execute()
	if err == nil {
		return 0
	}
	code, hint := t.classify(err)
	if t.Hint != nil {
		hint = t.Hint(hint)
	}
	msg := strings.TrimSpace(err.Error())
	fmt.Fprintf(stderr, "%s: error: %s\n", t.Name, msg)
	if hint != "" {
		for _, line := range strings.Split(hint, "\n") {
			fmt.Fprintf(stderr, "hint: %s\n", line)
		}
	}
	return code
}

func (t Tool) classify(err error) (int, string) {
	var e *Error
	if errors.As(err, &e) {
		return e.Code, e.Hint
	}
	var u *Usage
	if errors.As(err, &u) || isCobraUsage(err) {
		return t.UsageCode, "run '" + t.Name + " --help' for usage"
	}
	if t.Classify != nil {
		if code, hint, ok := t.Classify(err); ok {
			return code, hint
		}
	}
	return t.InternalCode, "this is unexpected: please report it with the command you ran"
}

func isCobraUsage(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand flag", "accepts ", "requires at least", "requires at most", "invalid argument", "flag needs an argument", "required flag"} {
		if strings.HasPrefix(msg, p) || strings.Contains(msg, " "+p) {
			return true
		}
	}
	return false
}

// IsTerminal reports whether f (a writer for colour and progress bars, or
// a reader for prompts) is a terminal.
func IsTerminal(f any) bool {
	file, ok := f.(*os.File)
	return ok && term.IsTerminal(int(file.Fd()))
}

// JSONLines writes one JSON object per call.
type JSONLines struct {
	enc *json.Encoder
}

// NewJSONLines returns a writer of JSON lines to w.
func NewJSONLines(w io.Writer) *JSONLines { return &JSONLines{enc: json.NewEncoder(w)} }

// Emit writes v as one line.
func (j *JSONLines) Emit(v any) { _ = j.enc.Encode(v) }
