// Package portstate says whether a database is the target of a port that
// has not finished, from port_db's bookkeeping in it: hsops_port (the
// source and when the port completed, NULL until it has) and
// hsops_port_deferred (the indexes and constraints dropped for the copy and
// not put back yet). port_db writes both (package porter); the homeserver
// and update_database read them here, before they use a database, so that
// nothing serves or changes a half-ported one.
package portstate

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"hsops/internal/db"
	"hsops/internal/fault"
)

// ErrInProgress means the database is the target of a port that has not
// finished: tables may be partly copied, and indexes and constraints
// dropped for the copy may not be back yet.
var ErrInProgress = fault.New(fault.NotOurs, "a port is in progress: run port_db again",
	"nothing was changed: finish the port first: run port_db again with the same --sqlite-database and --postgres-config")

// Check refuses (ErrInProgress, saying what is left) a database that is the
// target of an unfinished port: one killed or failed before its end. A
// SQLite database, or one no port by port_db ever began in, passes.
func Check(ctx context.Context, d *db.DB) error {
	if d == nil || d.Engine != db.Postgres {
		return nil
	}
	st, err := Read(ctx, d)
	if err != nil || st.Done() {
		return err
	}
	return fmt.Errorf("%w: %s", ErrInProgress, st)
}

// Status is where a target's port stands.
type Status struct {
	// Ours: a port by port_db began here (hsops_port has its row).
	Ours      bool
	Completed bool
	// Deferred counts the indexes and constraints dropped for the copy and
	// not put back yet.
	Deferred int
}

// Done reports whether nothing of a port is pending.
func (s Status) Done() bool { return !s.Ours || (s.Completed && s.Deferred == 0) }

func (s Status) String() string {
	switch {
	case s.Deferred > 0:
		return fmt.Sprintf("%d indexes and constraints dropped for the copy are not rebuilt yet, and the port did not finish", s.Deferred)
	case !s.Completed:
		return "the port did not finish: tables may be only partly copied"
	}
	return "the port finished"
}

// Read reads a PostgreSQL database's port bookkeeping.
func Read(ctx context.Context, d *db.DB) (Status, error) {
	var st Status
	ok, err := d.TableExists(ctx, d, "hsops_port")
	if err != nil || !ok {
		return st, err
	}
	var completed sql.NullInt64
	err = d.QueryRowContext(ctx, "SELECT completed_ts FROM hsops_port").Scan(&completed)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return st, nil
	case err != nil:
		return st, fmt.Errorf("read the port's bookkeeping: %w", err)
	}
	st.Ours, st.Completed = true, completed.Valid
	if ok, err := d.TableExists(ctx, d, "hsops_port_deferred"); err != nil || !ok {
		return st, err
	}
	if err := d.QueryRowContext(ctx, "SELECT count(*) FROM hsops_port_deferred").Scan(&st.Deferred); err != nil {
		return st, fmt.Errorf("read the port's bookkeeping: %w", err)
	}
	return st, nil
}
