// Package fault is the one error taxonomy of the tools.
//
// Every error a user can meet belongs to a class (what kind of failure it
// is) and may carry a hint (what to do next: the exact command where there
// is one). Both are attached where the error is defined: a sentinel is made
// with New, a cause is classified on its way up with Wrap, and a struct error
// classifies itself with Class and Hint methods. The tools never decide a
// class from an error's text.
//
// A class has one exit code, the same in every tool (Code). A few codes
// belong to one tool because Synapse's own script fixes them (synctl 1,
// synapse_port_db 1, 3 and 5): those are classes of their own, so that the
// rule "one class, one code" has no exception. Each tool lists the classes
// it can end with in its exit table (package cli).
package fault

import (
	"context"
	"errors"
	"fmt"
)

// Class is a kind of failure.
type Class int

// The classes. Their codes are in codes; their order here is the order of
// the exit tables.
const (
	// Internal is a failure nobody foresaw: a bug.
	Internal Class = iota
	// Interrupted is a run stopped by SIGINT or SIGTERM.
	Interrupted
	// StartFailed: a process failed to start (synctl; Synapse's 1).
	StartFailed
	// NoSQLite: the SQLite database to port does not exist (port_db;
	// Synapse's 1).
	NoSQLite
	// Actions: upgrade-check found actions to take before upgrading.
	Actions
	// Usage is a wrong command line: unknown flag or command, missing or
	// conflicting arguments.
	Usage
	// Blockers: upgrade-check or rehearse found something that blocks the
	// upgrade (shares 2 with usage errors: either way the gate is closed).
	Blockers
	// NotPostgres: the --postgres-config database is not psycopg2
	// (port_db; Synapse's 3).
	NotPostgres
	// Config is a missing, unreadable or invalid configuration.
	Config
	// Database: the database cannot be opened or reached (missing file,
	// not a database, server unreachable).
	Database
	// PortFailed: the port failed while copying (port_db; Synapse's 5).
	PortFailed
	// NotOurs: not a database this tool may change (a Synapse database
	// where only the engine's is changed, someone else's data, no
	// homeserver bookkeeping).
	NotOurs
	// Version: refused because of versions: compat version too new, a
	// database too old or newer than known, a bad target, a server too
	// old, a wrong encoding or locale.
	Version
	// Locked: another process holds the database's lock.
	Locked
	// Delta: a schema delta (or a reverse) failed and was undone.
	Delta
	// Update: a background update failed.
	Update
	// DataLoss: the operation would lose data or cannot be undone.
	DataLoss
	// InUse: the homeserver (or another program) is using the database.
	InUse
	// Backup: the copy made before a change failed.
	Backup
	// NotConfirmed: a change nobody confirmed.
	NotConfirmed
	// Permission: a file or directory the tool must write is not writable
	// by this user, or a process may not be signalled.
	Permission
	// Source: the SQLite database cannot be ported as it is (port_db).
	Source
	// Target: the PostgreSQL database is not ready for this port (port_db).
	Target
	// Verify: port_db --verify found differences.
	Verify
	// StopTimeout: a process did not stop in time (synctl).
	StopTimeout
	// Unhealthy: a process started but does not answer /health (synctl).
	Unhealthy
	// Down: status found a process not running or not healthy (synctl).
	Down
	// Listen: a listener cannot be bound (homeserver).
	Listen
	// Rejected: the running homeserver refused a request (homeserver
	// register-user, update_database background enabled).
	Rejected
	// Failed: the operation failed for a reason its message gives (hsload).
	Failed
	// RolledBack: a switch to PostgreSQL failed before the homeserver
	// served from it and was undone: the old config is back and the
	// homeserver runs on SQLite again (port_db --switch-config).
	RolledBack
)

var codes = map[Class]int{
	Internal:     70,
	Interrupted:  130,
	StartFailed:  1,
	NoSQLite:     1,
	Actions:      1,
	Usage:        2,
	Blockers:     2,
	NotPostgres:  3,
	Config:       4,
	Database:     5,
	PortFailed:   5,
	NotOurs:      6,
	Version:      7,
	Locked:       8,
	Delta:        9,
	Update:       10,
	DataLoss:     11,
	InUse:        12,
	Backup:       13,
	NotConfirmed: 14,
	Permission:   15,
	Source:       16,
	Target:       17,
	Verify:       18,
	StopTimeout:  20,
	Unhealthy:    21,
	Down:         22,
	Listen:       23,
	Rejected:     24,
	Failed:       25,
	RolledBack:   26,
}

var names = map[Class]string{
	Internal: "internal", Interrupted: "interrupted", StartFailed: "start-failed", NoSQLite: "no-sqlite",
	Actions: "actions", Usage: "usage", Blockers: "blockers", NotPostgres: "not-postgres", Config: "config",
	Database: "database", PortFailed: "port-failed", NotOurs: "not-ours", Version: "version", Locked: "locked",
	Delta: "delta", Update: "update", DataLoss: "data-loss", InUse: "in-use", Backup: "backup",
	NotConfirmed: "not-confirmed", Permission: "permission", Source: "source", Target: "target",
	Verify: "verify", StopTimeout: "stop-timeout", Unhealthy: "unhealthy", Down: "down", Listen: "listen",
	Rejected: "rejected", Failed: "failed", RolledBack: "rolled-back",
}

// shared are the classes that share a code on purpose: a gate that fails
// either way (usage, blockers), and Synapse's catch-all 5 of its porter.
var shared = [][]Class{{Usage, Blockers}, {Database, PortFailed}}

// SharesCode reports whether two classes share their code on purpose, so
// that one tool may end with either.
func SharesCode(a, b Class) bool {
	for _, g := range shared {
		var hasA, hasB bool
		for _, c := range g {
			hasA = hasA || c == a
			hasB = hasB || c == b
		}
		if hasA && hasB {
			return true
		}
	}
	return false
}

// Code is the exit code of the class, the same in every tool.
func (c Class) Code() int { return codes[c] }

// String names the class (for --json output and tests).
func (c Class) String() string {
	if n, ok := names[c]; ok {
		return n
	}
	return fmt.Sprintf("class(%d)", int(c))
}

// ParseClass returns the class String names.
func ParseClass(name string) (Class, bool) {
	for c, n := range names {
		if n == name {
			return c, true
		}
	}
	return Internal, false
}

// Classes lists every class in table order.
func Classes() []Class {
	out := make([]Class, 0, len(codes))
	for c := Internal; c <= RolledBack; c++ {
		out = append(out, c)
	}
	return out
}

// Error is a classified error: a sentinel (made by New) or a classified
// cause (made by Wrap).
type Error struct {
	class Class
	msg   string
	hint  string
	err   error
}

// New makes a sentinel error of a class with its hint ("" for none).
func New(c Class, msg, hint string) *Error {
	return &Error{class: c, msg: msg, hint: hint}
}

// Wrap classifies err: the result has class c and hint, and unwraps to err.
// A nil err stays nil.
func Wrap(c Class, err error, hint string) error {
	if err == nil {
		return nil
	}
	return &Error{class: c, hint: hint, err: err}
}

// Errorf formats an error of class c with a hint; %w wraps as in
// fmt.Errorf.
func Errorf(c Class, hint, format string, args ...any) error {
	return &Error{class: c, hint: hint, err: fmt.Errorf(format, args...)}
}

// Usagef formats a usage error.
func Usagef(format string, args ...any) error {
	return &Error{class: Usage, err: fmt.Errorf(format, args...)}
}

func (e *Error) Error() string {
	if e.err != nil {
		return e.err.Error()
	}
	return e.msg
}

// Unwrap returns the classified cause (nil for a sentinel).
func (e *Error) Unwrap() error { return e.err }

// Class returns the error's class.
func (e *Error) Class() Class { return e.class }

// Hint returns what to do next ("" when nothing useful can be said).
func (e *Error) Hint() string { return e.hint }

// classed is what an error implements to carry a class: *Error and the
// packages' struct errors.
type classed interface {
	Class() Class
}

type hinted interface {
	Hint() string
}

// ClassOf returns the class of err: Interrupted when the run was cancelled
// (whatever the error wrapping the cancellation), else the class of the
// outermost classified error in its chain, else Internal.
func ClassOf(err error) Class {
	if err == nil {
		return Internal
	}
	if IsInterrupted(err) {
		return Interrupted
	}
	if c, ok := outermost(err); ok {
		return c.Class()
	}
	return Internal
}

// HintOf returns the hint of the error that gives err its class ("" when it
// has none). A cancelled run has no hint of its own: the tool says how to
// go on.
func HintOf(err error) string {
	if err == nil || IsInterrupted(err) {
		return ""
	}
	if c, ok := outermost(err); ok {
		if h, ok := c.(hinted); ok {
			return h.Hint()
		}
	}
	return ""
}

// IsInterrupted reports whether err comes from a cancelled context.
func IsInterrupted(err error) bool {
	return errors.Is(err, context.Canceled)
}

// outermost finds the first error in err's chain (depth first, as
// errors.As does) that carries a class.
func outermost(err error) (classed, bool) {
	var c classed
	if errors.As(err, &c) {
		return c, true
	}
	return nil, false
}

// InterruptedError is a run stopped by a signal, with what it had committed
// when it stopped: the work that knows it (the versions applied, the
// batches done) says it, so that the tool can tell the operator what is
// kept before asking them to run the same command again.
type InterruptedError struct {
	// Committed says what is kept ("schema 69 to 71 applied; 72 was rolled
	// back"); "" when the work has nothing to say.
	Committed string
	Err       error
}

func (e *InterruptedError) Error() string {
	if e.Committed == "" {
		return "interrupted"
	}
	return "interrupted: " + e.Committed
}

// Unwrap returns the cancellation.
func (e *InterruptedError) Unwrap() error { return e.Err }

// Class is Interrupted.
func (e *InterruptedError) Class() Class { return Interrupted }

// Interrupt records what was committed when err is an interruption (see
// IsInterrupted); any other err, and nil, are returned as they are.
func Interrupt(err error, committed string) error {
	if err == nil || !IsInterrupted(err) {
		return err
	}
	return &InterruptedError{Committed: committed, Err: err}
}

// InterruptCtx is Interrupt for work that ran under ctx: once ctx is
// cancelled, any error the work returned (a driver's own "interrupted", a
// half-read answer) is the interruption.
func InterruptCtx(ctx context.Context, err error, committed string) error {
	if err != nil && !IsInterrupted(err) && ctx.Err() != nil {
		err = fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	return Interrupt(err, committed)
}

// CommittedOf returns what an interrupted run had committed, as the
// outermost InterruptedError that says it ("" when none does).
func CommittedOf(err error) string {
	switch e := err.(type) {
	case nil:
		return ""
	case *InterruptedError:
		if e.Committed != "" {
			return e.Committed
		}
	}
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		return CommittedOf(u.Unwrap())
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			if c := CommittedOf(e); c != "" {
				return c
			}
		}
	}
	return ""
}
