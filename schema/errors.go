package schema

import (
	"errors"
	"fmt"
)

// Sentinel errors. Each is a class of refusal or failure with its own exit
// code in the tools.
var (
	// ErrNotEngine means the database is a homeserver database whose schema
	// the engine does not own (a real Synapse database).
	ErrNotEngine = errors.New("not an hsops engine database")
	// ErrNotHomeserver means the database holds tables but no homeserver
	// bookkeeping.
	ErrNotHomeserver = errors.New("not a homeserver database")
	// ErrCompatTooNew means the database's compat version is newer than the
	// code's schema version: a newer release upgraded it incompatibly.
	ErrCompatTooNew = errors.New("database is too new for this version")
	// ErrTooOld means the database is older than the oldest snapshot the
	// engine can upgrade from.
	ErrTooOld = errors.New("database is too old to upgrade")
	// ErrBadTarget means the requested target version is out of range or
	// below the database's version.
	ErrBadTarget = errors.New("invalid target schema version")
	// ErrWorker means a worker process found a database that only the main
	// process may prepare or upgrade.
	ErrWorker = errors.New("database not ready for a worker")
	// ErrLocked means another process is changing the schema.
	ErrLocked = errors.New("database is locked by another process")
	// ErrInvalidSchema means the embedded schema set itself is broken
	// (duplicate delta names, a Go delta without code, ...).
	ErrInvalidSchema = errors.New("invalid schema files")
)

// DeltaError reports a delta that failed; its version was rolled back.
type DeltaError struct {
	Version int
	File    string
	Err     error
}

func (e *DeltaError) Error() string {
	return fmt.Sprintf("apply delta %d/%s: %v", e.Version, e.File, e.Err)
}

func (e *DeltaError) Unwrap() error { return e.Err }

// LockedError names the process holding the schema lock.
type LockedError struct {
	Holder string
}

func (e *LockedError) Error() string {
	if e.Holder == "" {
		return ErrLocked.Error()
	}
	return fmt.Sprintf("%v: held by %s", ErrLocked, e.Holder)
}

// Is makes errors.Is(err, ErrLocked) true.
func (e *LockedError) Is(target error) bool { return target == ErrLocked }
