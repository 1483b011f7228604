package fault

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

var errSentinel = New(Locked, "locked", "wait")

type structErr struct{ inner error }

func (e *structErr) Error() string { return "struct: " + e.inner.Error() }
func (e *structErr) Unwrap() error { return e.inner }
func (e *structErr) Class() Class  { return Delta }
func (e *structErr) Hint() string  { return "struct hint" }

func TestClassOf(t *testing.T) {
	for _, tc := range []struct {
		name      string
		err       error
		class     Class
		hint      string
		sentinels []error
	}{
		{"plain", errors.New("boom"), Internal, "", nil},
		{"sentinel", errSentinel, Locked, "wait", []error{errSentinel}},
		{"wrapped sentinel", fmt.Errorf("take it: %w", errSentinel), Locked, "wait", []error{errSentinel}},
		{"outermost wins", Wrap(Backup, fmt.Errorf("copy: %w", errSentinel), "free space"), Backup, "free space", []error{errSentinel}},
		{"struct error", fmt.Errorf("apply: %w", &structErr{errSentinel}), Delta, "struct hint", []error{errSentinel}},
		{"cancelled beats every class", &structErr{fmt.Errorf("batch: %w", context.Canceled)}, Interrupted, "", []error{context.Canceled}},
		{"usage", Usagef("bad flag %q", "x"), Usage, "", nil},
		{"errorf wraps", Errorf(Config, "fix it", "load: %w", errSentinel), Config, "fix it", []error{errSentinel}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ClassOf(tc.err); got != tc.class {
				t.Errorf("ClassOf = %v, want %v", got, tc.class)
			}
			if got := HintOf(tc.err); got != tc.hint {
				t.Errorf("HintOf = %q, want %q", got, tc.hint)
			}
			for _, s := range tc.sentinels {
				if !errors.Is(tc.err, s) {
					t.Errorf("errors.Is(%v) = false", s)
				}
			}
		})
	}
	if Wrap(Config, nil, "x") != nil {
		t.Error("Wrap(nil) is not nil")
	}
}

func TestClasses_CodesAndNames(t *testing.T) {
	byCode := map[int]Class{}
	for _, c := range Classes() {
		if c.Code() == 0 {
			t.Errorf("%v has no exit code", c)
		}
		if p, ok := ParseClass(c.String()); !ok || p != c {
			t.Errorf("ParseClass(%q) = %v, %v", c.String(), p, ok)
		}
		if prev, ok := byCode[c.Code()]; ok && !SharesCode(prev, c) && !toolOwned(prev, c) {
			t.Errorf("exit %d is both %v and %v", c.Code(), prev, c)
		}
		byCode[c.Code()] = c
	}
}

// toolOwned are codes Synapse fixes in one tool each, so classes of
// different tools may share them.
func toolOwned(a, b Class) bool {
	one := map[Class]bool{StartFailed: true, NoSQLite: true, Actions: true}
	return one[a] && one[b]
}
