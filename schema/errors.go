package schema

import (
	"fmt"

	"hsops/internal/fault"
)

// Sentinel errors. Each is a class of refusal or failure with its own exit
// code in the tools.
var (
	// ErrNotEngine means the database is a homeserver database whose schema
	// the engine does not own (a real Synapse database).
	ErrNotEngine = fault.New(fault.NotOurs, "not an hsops engine database",
		"nothing was changed: Synapse upgrades its own database when the new release starts (or with its update_synapse_database);\n`update_database status` and `update_database upgrade-check` report on it")
	// ErrNotHomeserver means the database holds tables but no homeserver
	// bookkeeping.
	ErrNotHomeserver = fault.New(fault.NotOurs, "not a homeserver database",
		"nothing was changed: point the database args of <config> at the homeserver's database, or at an empty one to create it")
	// ErrNewerThanKnown means a release newer than every schema version
	// hsops knows wrote the database: only that release can use it, roll it
	// back (with its own rollback, if it documents one) or port it. Every
	// tool refuses such a database with it (see NewerError).
	ErrNewerThanKnown = fault.New(fault.Version, "the database is newer than what hsops knows",
		"nothing was changed: use the release that wrote it: it runs on the database, and its own rollback (if it documents one) takes the database back to a schema hsops knows")
	// ErrCompatTooNew is ErrNewerThanKnown for a database whose compat
	// version is newer than the code's schema version: a newer release
	// upgraded it incompatibly, and this code cannot use it.
	ErrCompatTooNew = ErrNewerThanKnown
	// ErrTooOld means the database is older than the oldest snapshot the
	// engine can upgrade from.
	ErrTooOld = fault.New(fault.Version, "database is too old to upgrade",
		"nothing was changed: upgrade it with Synapse first (to v1.56 or later, schema 68+)")
	// ErrBadTarget means the requested target version is out of range or
	// below the database's version.
	ErrBadTarget = fault.New(fault.Version, "invalid target schema version",
		"nothing was changed: choose a version between 68 and 83: --to-version upgrades to one at or above the database's, rollback --to-schema goes down to one below it")
	// ErrWorker means a worker process found a database that only the main
	// process may prepare or upgrade.
	ErrWorker = fault.New(fault.Version, "database not ready for a worker",
		"start (or upgrade with) the main process first, then the workers")
	// ErrLocked means another process is changing the schema.
	ErrLocked = fault.New(fault.Locked, "database is locked by another process",
		"nothing was changed: wait for that process to finish, then run the same command again")
	// ErrInvalidSchema means the embedded schema set itself is broken
	// (duplicate delta names, a Go delta without code, ...).
	ErrInvalidSchema = fault.New(fault.Internal, "invalid schema files", "")
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

// Class makes a failed delta its own class.
func (e *DeltaError) Class() fault.Class { return fault.Delta }

// Hint says what was undone.
func (e *DeltaError) Hint() string {
	return fmt.Sprintf("version %d was rolled back; the versions before it stay applied. Fix the cause and run the same command again", e.Version)
}

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

// Class is ErrLocked's.
func (e *LockedError) Class() fault.Class { return fault.Locked }

// Hint is ErrLocked's.
func (e *LockedError) Hint() string { return ErrLocked.Hint() }

// NewerError is ErrNewerThanKnown for one database: its versions, and the
// schema versions hsops knows.
type NewerError struct {
	// Database names the database when a tool has two ("" says "it").
	Database  string
	Version   int
	Compat    int
	HasCompat bool
	// Oldest and Newest bound the schema versions hsops knows.
	Oldest, Newest int
}

// Newer is the refusal of a database in state st, newer than the set s.
func (s *Set) Newer(st *State) *NewerError {
	return &NewerError{Version: st.Version, Compat: st.Compat, HasCompat: st.HasCompat, Oldest: s.Oldest, Newest: s.Version}
}

func (e *NewerError) Error() string {
	at := fmt.Sprintf("schema %d", e.Version)
	if e.HasCompat {
		at = fmt.Sprintf("schema %d, compat %d", e.Version, e.Compat)
	}
	who := "it"
	if e.Database != "" {
		who = e.Database
	}
	return fmt.Sprintf("%v: %s is at %s, and hsops knows schema %d to %d", ErrNewerThanKnown, who, at, e.Oldest, e.Newest)
}

// Is makes errors.Is(err, ErrNewerThanKnown) true.
func (e *NewerError) Is(target error) bool { return target == ErrNewerThanKnown }

// Class is ErrNewerThanKnown's.
func (e *NewerError) Class() fault.Class { return fault.Version }

// Hint is ErrNewerThanKnown's.
func (e *NewerError) Hint() string { return ErrNewerThanKnown.Hint() }
