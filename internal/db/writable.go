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
		return CheckSQLiteWritable(d.Path)
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

// CheckSQLiteWritable is CheckWritable for a SQLite file that exists.
func CheckSQLiteWritable(path string) error {
	desc := "SQLite database"
	if err := writable.File(path, desc); err != nil {
		return err
	}
	of := fmt.Sprintf("%s %q", desc, path)
	if err := writable.Dir(filepath.Dir(path), of, "SQLite writes its journal there"); err != nil {
		return err
	}
	for _, side := range []string{"-journal", "-wal", "-shm"} {
		if _, err := os.Stat(path + side); err == nil {
			if err := writable.File(path+side, "the file"); err != nil {
				var e *writable.Error
				if errors.As(err, &e) {
					e.Of = of
				}
				return err
			}
		}
	}
	return nil
}
