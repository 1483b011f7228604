package offline

import (
	"context"
	"database/sql"
	"fmt"

	"hsops/internal/config"
	"hsops/internal/db"
	"hsops/schema"
)

// CheckWritable says why the tool, as the user it runs as, cannot change
// the database of dbc, or nil: a SQLite file, its directory (where the lock
// file, SQLite's journal and a rollback's copy are written) or a file next
// to it that this user may not write (a *writable.Error); a PostgreSQL
// session that cannot write (db.ErrReadOnlyServer) or tables owned by
// another role (a *db.NotPermittedError). A SQLite file that does not exist
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
	return db.CheckSQLiteWritable(path, "the lock file, SQLite's journal and a rollback's copy are written there", schema.LockPath(path))
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
	return &db.NotPermittedError{Database: d.Desc, User: me, Owner: owner, Why: why}
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
