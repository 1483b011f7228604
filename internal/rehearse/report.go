package rehearse

import (
	"fmt"

	"hsops/internal/fault"
	"hsops/internal/upgradecheck"
)

// Report is a rehearsal's outcome.
type Report struct {
	// Kind is "engine" or "synapse".
	Kind string `json:"kind"`
	// Release is the Synapse release rehearsed (Synapse databases).
	Release string `json:"release,omitempty"`
	// Target is the schema version the upgrade brings the database to.
	Target    int              `json:"target_schema"`
	Databases []DatabaseReport `json:"databases"`
	// BlockingMillis is the blocking phase, the predicted downtime: what a
	// homeserver's start-up waits for (the schema deltas; for Synapse, the
	// start of update_synapse_database to its schema being up to date).
	BlockingMillis int64 `json:"blocking_ms"`
	// BackgroundMillis is the background phase run flat out (no pauses
	// between batches), what runs while the homeserver serves.
	BackgroundMillis int64 `json:"background_ms"`
	// PacedMillis estimates the background phase at the homeserver's own
	// pace (its sleep before each batch, background_updates in the config).
	PacedMillis int64 `json:"background_paced_ms"`
	Batches     int   `json:"background_batches"`
	// CopyMillis is the time the copies took.
	CopyMillis int64 `json:"copy_ms"`
	// Millis is the whole rehearsal.
	Millis int64 `json:"ms"`
	// Failure is the first thing that failed (nil when the rehearsal
	// passed).
	Failure *Failure `json:"failure,omitempty"`
	// Cleaned are stale scratch copies of earlier rehearsals removed first.
	Cleaned []string `json:"cleaned,omitempty"`
	// Notes are things the operator should know (free space unchecked, a
	// copy that made writers wait ...).
	Notes  []string `json:"notes,omitempty"`
	Passed bool     `json:"passed"`
	// Nothing is set when there was nothing to rehearse (no delta, no
	// background update): no copy was made.
	Nothing string `json:"nothing,omitempty"`
}

// DatabaseReport is one physical database's part.
type DatabaseReport struct {
	Label string `json:"label"`
	// Source describes the original database (never written).
	Source string `json:"source"`
	Copy   Copy   `json:"copy"`
	// Before and After are the schema and compat versions.
	Before Versions `json:"before"`
	After  Versions `json:"after"`
	Deltas []Step   `json:"deltas"`
	// Updates are the background updates in the order they ran; those a
	// failure left unrun have Ran false.
	Updates []Step `json:"background_updates"`
	// Tables are the row counts of every table before and after (-1: the
	// table did not exist).
	Tables []TableCount           `json:"tables"`
	Checks []upgradecheck.Finding `json:"checks"`
}

// Versions are a database's schema and compat versions.
type Versions struct {
	Schema int `json:"schema_version"`
	Compat int `json:"compat_version"`
}

// Step is a delta or a background update as the rehearsal ran it.
type Step struct {
	Name string `json:"name"`
	// Millis is its wall time (-1 when unknown).
	Millis int64 `json:"ms"`
	// Rows is what it touched: rows inserted, updated or deleted by a
	// delta (engine databases), items processed by a background update
	// (-1 when unknown).
	Rows    int64  `json:"rows"`
	Batches int    `json:"batches,omitempty"`
	Ran     bool   `json:"ran"`
	OK      bool   `json:"ok"`
	Error   string `json:"error,omitempty"`
}

// TableCount is a table's rows before and after the upgrade.
type TableCount struct {
	Table  string `json:"table"`
	Before int64  `json:"before"`
	After  int64  `json:"after"`
}

// Copy is how a database was copied.
type Copy struct {
	// Method is "backup" (SQLite's online backup API), "locked" (a SQLite
	// file in rollback-journal mode copied under its read lock), "template"
	// (CREATE DATABASE ... TEMPLATE) or "snapshot" (COPY from one exported
	// snapshot).
	Method string `json:"method"`
	// Scratch names the copy: a file path or a database name.
	Scratch string `json:"scratch"`
	// Bytes is the size copied.
	Bytes  int64 `json:"bytes"`
	Millis int64 `json:"ms"`
	// Tables and Rows are counted by the snapshot copy; DataMillis is its
	// COPY of the rows, RebuildMillis the keys, indexes, foreign keys,
	// triggers and statistics after them.
	Tables        int   `json:"tables,omitempty"`
	Rows          int64 `json:"rows,omitempty"`
	DataMillis    int64 `json:"data_ms,omitempty"`
	RebuildMillis int64 `json:"rebuild_ms,omitempty"`
	// WritersWaitedMillis is how long the homeserver's writes had to wait
	// (a SQLite database in rollback-journal mode that kept being written,
	// copied under its read lock in the end); 0 otherwise.
	WritersWaitedMillis int64 `json:"writers_waited_ms,omitempty"`
	// Verified is set when the copy was compared with the source table by
	// table (row counts and checksums, at the snapshot).
	Verified bool `json:"verified,omitempty"`
	// Kept is where the copy is when it was kept (--keep).
	Kept string `json:"kept,omitempty"`
}

// Failure says what failed on the copy and how to fix it on the original.
// As an error it is of class fault.Blockers: the upgrade would fail.
type Failure struct {
	Database string `json:"database,omitempty"`
	// Phase is "schema", "background" or "checks".
	Phase string `json:"phase"`
	// Step is the delta, background update or check that failed.
	Step  string `json:"step"`
	Cause string `json:"cause"`
	// Fix is the command or action that fixes the original; <config>
	// stands for the operator's config.
	Fix string `json:"fix"`
}

func (f *Failure) Error() string {
	what := map[string]string{"schema": "schema delta", "background": "background update", "checks": "check"}[f.Phase]
	return fmt.Sprintf("the upgrade failed on the copy: %s %s: %s", what, f.Step, f.Cause)
}

// Class is fault.Blockers: a failed rehearsal closes the gate.
func (f *Failure) Class() fault.Class { return fault.Blockers }

// Hint is the fix, then the rehearsal again.
func (f *Failure) Hint() string {
	if f.Fix == "" {
		return "nothing was changed on the original database"
	}
	return "nothing was changed on the original database; fix it there, then rehearse again:\n" + f.Fix
}
