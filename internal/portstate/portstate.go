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
	"strings"

	"hsops/internal/db"
	"hsops/internal/fault"
)

// ErrInProgress means the database is the target of a port that has not
// finished: tables may be partly copied, and indexes and constraints
// dropped for the copy may not be back yet.
var ErrInProgress = fault.New(fault.NotOurs, "a port is in progress: run port_db again",
	"nothing was changed: finish the port first: run port_db again with the same --sqlite-database and --postgres-config")

// InProgressError is ErrInProgress for one database: what is left, and the
// port_db command that finishes it.
type InProgressError struct {
	Status Status
}

func (e *InProgressError) Error() string { return ErrInProgress.Error() + ": " + e.Status.String() }

// Is makes errors.Is(err, ErrInProgress) true.
func (e *InProgressError) Is(target error) bool { return target == ErrInProgress }

// Class is ErrInProgress's.
func (e *InProgressError) Class() fault.Class { return ErrInProgress.Class() }

// Hint names the command that finishes the port: the source it began from
// (as recorded) and the config of this database (<config>, which each tool
// names its own way).
func (e *InProgressError) Hint() string {
	if e.Status.Source == "" {
		return ErrInProgress.Hint()
	}
	return "nothing was changed: finish the port first:\n  port_db --sqlite-database " + shellQuote(e.Status.Source) + " --postgres-config <config>"
}

// shellQuote quotes a path for a shell where it needs it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-+,=:@%") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Check refuses (an *InProgressError: what is left, and the command that
// finishes it) a database that is the target of an unfinished port: one
// killed or failed before its end, or one whose indexes and constraints
// dropped for the copy are not rebuilt yet. A SQLite database, or one no
// port by port_db ever began in, passes.
func Check(ctx context.Context, d *db.DB) error {
	if d == nil || d.Engine != db.Postgres {
		return nil
	}
	st, err := Read(ctx, d)
	if err != nil || st.Done() {
		return err
	}
	return &InProgressError{Status: st}
}

// Status is where a target's port stands.
type Status struct {
	// Ours: a port by port_db began here (hsops_port has its row).
	Ours      bool
	Completed bool
	// Deferred counts the indexes and constraints dropped for the copy and
	// not put back yet.
	Deferred int
	// Source is the SQLite database the port copies from, as port_db was
	// given it ("" when the bookkeeping does not say).
	Source string
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
	var source sql.NullString
	// source_path is read only where the table has it: a port begun by an
	// older port_db may lack it.
	query := "SELECT completed_ts, NULL FROM hsops_port"
	if ok, err := hasColumn(ctx, d, "hsops_port", "source_path"); err != nil {
		return st, err
	} else if ok {
		query = "SELECT completed_ts, source_path FROM hsops_port"
	}
	err = d.QueryRowContext(ctx, query).Scan(&completed, &source)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return st, nil
	case err != nil:
		return st, fmt.Errorf("read the port's bookkeeping: %w", err)
	}
	st.Ours, st.Completed, st.Source = true, completed.Valid, source.String
	if ok, err := d.TableExists(ctx, d, "hsops_port_deferred"); err != nil || !ok {
		return st, err
	}
	if err := d.QueryRowContext(ctx, "SELECT count(*) FROM hsops_port_deferred").Scan(&st.Deferred); err != nil {
		return st, fmt.Errorf("read the port's bookkeeping: %w", err)
	}
	return st, nil
}

func hasColumn(ctx context.Context, d *db.DB, table, column string) (bool, error) {
	var ok bool
	err := d.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM information_schema.columns
		WHERE table_schema = current_schema() AND table_name = $1 AND column_name = $2)`, table, column).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("read the port's bookkeeping: %w", err)
	}
	return ok, nil
}
