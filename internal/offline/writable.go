package offline

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"hsops/internal/config"
	"hsops/internal/db"
	"hsops/internal/fault"
	"hsops/internal/writable"
	"hsops/schema"
)

// NotWritableError is a PostgreSQL database whose tables the tool's
// database user may not change (they belong to another role). It is found
// before anything is written. (A SQLite file or directory this user may not
// write is a *writable.Error, as for the homeserver.)
type NotWritableError struct {
	// Database describes the database.
	Database string
	// User is the session's database user; Owner owns the tables.
	User, Owner string
	// Why names the table and what the user may not do to it.
	Why string
}

func (e *NotWritableError) Error() string {
	return fmt.Sprintf("%s is not writable by user %s: %s", e.Database, e.User, e.Why)
}

// Class is fault.Permission.
func (e *NotWritableError) Class() fault.Class { return fault.Permission }

// Hint says whom to run it as.
func (e *NotWritableError) Hint() string {
	return fmt.Sprintf("nothing was changed: run it with the homeserver's database user (the database args of <config>), which owns the tables (%s)", e.Owner)
}

// CheckWritable says why the tool, as the user it runs as, cannot change
// the database of dbc, or nil: a SQLite file, its directory (where the lock
// file, SQLite's journal and a rollback's copy are written) or a file next
// to it that this user may not write (a *writable.Error); a PostgreSQL
// session that cannot write (db.ErrReadOnlyServer) or tables owned by
// another role (a *NotWritableError). A SQLite file that does not exist
// yet needs a writable directory. On PostgreSQL, alters asks for the schema
// to be changed (every table owned by the user's roles); writes lists the
// tables whose rows are written.
func CheckWritable(ctx context.Context, dbc config.Database, alters bool, writes ...string) error {
	if dbc.IsSQLite() {
		return checkSQLite(dbc.SQLitePath())
	}
	// Not ReadOnly: db.CheckWritable asks whether the session's
	// transactions can write, which a read-only handle's never can.
	d, err := db.Open(ctx, dbc, db.Options{AppName: "hsops update_database"})
	if err != nil {
		return err
	}
	defer d.Close()
	if err := db.CheckWritable(ctx, d); err != nil {
		return err
	}
	return checkPostgres(ctx, d, alters, writes)
}

// checkSQLite checks the file, its directory and the files SQLite and the
// tools write next to it.
func checkSQLite(path string) error {
	of := fmt.Sprintf("SQLite database %q", path)
	if _, err := os.Stat(path); err == nil {
		if err := writable.File(path, "SQLite database"); err != nil {
			return err
		}
	}
	if err := writable.Dir(filepath.Dir(path), of, "the lock file, SQLite's journal and a rollback's copy are written there"); err != nil {
		return err
	}
	for _, side := range []string{path + "-wal", path + "-shm", path + "-journal", schema.LockPath(path)} {
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

// checkPostgres refuses tables the session's user may not
// change: for alters, tables not owned by one of its roles; for writes,
// tables it lacks INSERT, UPDATE or DELETE on.
func checkPostgres(ctx context.Context, d *db.DB, alters bool, writes []string) error {
	var me string
	var super bool
	if err := d.QueryRowContext(ctx, "SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user").Scan(&me, &super); err != nil {
		return err
	}
	if super {
		return nil
	}
	var (
		table, owner string
		n            int
	)
	var err error
	if alters {
		err = d.QueryRowContext(ctx, `SELECT min(tablename), min(tableowner), count(*) FROM pg_tables
			WHERE schemaname = current_schema() AND NOT pg_has_role(current_user, tableowner, 'USAGE')`).Scan(nullable(&table), nullable(&owner), &n)
	} else if len(writes) > 0 {
		err = d.QueryRowContext(ctx, `SELECT min(tablename), min(tableowner), count(*) FROM pg_tables
			WHERE schemaname = current_schema() AND tablename = ANY($1)
			  AND NOT has_table_privilege(quote_ident(tablename), 'INSERT, UPDATE, DELETE')`, writes).Scan(nullable(&table), nullable(&owner), &n)
	}
	if err != nil || n == 0 {
		return err
	}
	why := fmt.Sprintf("table %s is owned by role %s", table, owner)
	if n > 1 {
		why = fmt.Sprintf("%d tables (%s, ...) are owned by role %s", n, table, owner)
	}
	if !alters {
		why = fmt.Sprintf("it may not change the rows of table %s (owner %s)", table, owner)
	}
	return &NotWritableError{Database: d.Desc, User: me, Owner: owner, Why: why}
}

// nullable scans a NULL as "".
func nullable(s *string) any { return &nullString{s} }

type nullString struct{ s *string }

func (n *nullString) Scan(v any) error {
	var ns sql.NullString
	if err := ns.Scan(v); err != nil {
		return err
	}
	*n.s = ns.String
	return nil
}
