package db

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"hsops/internal/fault"
	"hsops/internal/writable"
)

// ErrReadOnlyServer means a PostgreSQL session cannot write: the server is
// a hot standby, or default_transaction_read_only is set for the database
// or the user.
var ErrReadOnlyServer = fault.New(fault.Permission, "this server is a read-only replica",
	"nothing was changed: point the database args of <config> at the primary (with a list of hosts, target_session_attrs: read-write picks it)")

// CheckWritable says why this process cannot write the database, before
// anything is written: a SQLite file (or its directory, where SQLite writes
// its journal, or a journal, -wal or -shm file next to it) that the user it
// runs as may not write (a *writable.Error), or a PostgreSQL session that
// is read-only (ErrReadOnlyServer). Nil when it can write.
func CheckWritable(ctx context.Context, d *DB) error {
	if d.Engine == SQLite {
		return CheckSQLiteWritable(d.Path, "SQLite writes its journal there")
	}
	var readOnly string
	var standby bool
	if err := d.QueryRowContext(ctx, "SELECT current_setting('transaction_read_only'), pg_is_in_recovery()").Scan(&readOnly, &standby); err != nil {
		return fmt.Errorf("ask %s whether it can write: %w", d.Desc, err)
	}
	switch {
	case standby:
		return fmt.Errorf("%s: %w (a hot standby: pg_is_in_recovery() is true)", d.Desc, ErrReadOnlyServer)
	case readOnly == "on":
		return fault.Wrap(fault.Permission, fmt.Errorf("%s: %w (default_transaction_read_only is on for this database or user)", d.Desc, ErrReadOnlyServer),
			"nothing was changed: ALTER DATABASE ... RESET default_transaction_read_only (or ALTER ROLE ... RESET ...), or point the database args of <config> at a server that writes")
	}
	return nil
}

// CheckSQLiteWritable says why this process cannot write the SQLite
// database at path (a *writable.Error), or nil: the file, if it exists;
// its directory, where dirWhy says what is written (SQLite's journal at
// least); and the files next to it that exist: SQLite's journal, -wal and
// -shm files and the tool's own (extra).
func CheckSQLiteWritable(path, dirWhy string, extra ...string) error {
	desc := "SQLite database"
	if _, err := os.Stat(path); err == nil {
		if err := writable.File(path, desc); err != nil {
			return err
		}
	}
	of := fmt.Sprintf("%s %q", desc, path)
	if err := writable.Dir(filepath.Dir(path), of, dirWhy); err != nil {
		return err
	}
	for _, side := range append([]string{path + "-journal", path + "-wal", path + "-shm"}, extra...) {
		if _, err := os.Stat(side); err != nil {
			continue
		}
		if err := writable.File(side, "the file"); err != nil {
			var e *writable.Error
			if errors.As(err, &e) {
				e.Of = of
			}
			return err
		}
	}
	return nil
}

// NotPermittedError is a PostgreSQL database whose tables the session's
// user may not read or change: they belong to a role it is not a member
// of, or it lacks the privileges. It is found before anything is written.
// (A SQLite file or directory this user may not write is a
// *writable.Error.)
type NotPermittedError struct {
	// Database describes the database.
	Database string
	// User is the session's database user; Owner owns the tables.
	User, Owner string
	// Access is what the database is not to this user: "readable" or
	// "writable" (the default).
	Access string
	// Why names the table and what the user may not do to it.
	Why string
}

func (e *NotPermittedError) Error() string {
	access := e.Access
	if access == "" {
		access = "writable"
	}
	return fmt.Sprintf("%s is not %s by user %s: %s", e.Database, access, e.User, e.Why)
}

// Class is fault.Permission.
func (e *NotPermittedError) Class() fault.Class { return fault.Permission }

// Hint says whom to run it as.
func (e *NotPermittedError) Hint() string {
	return fmt.Sprintf("nothing was changed: run it with the homeserver's database user (the database args of <config>), which owns the tables (%s)", e.Owner)
}
