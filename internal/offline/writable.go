package offline

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"

	"hsops/internal/config"
	"hsops/internal/db"
	"hsops/internal/fault"
	"hsops/schema"
)

// NotWritableError is a database the tool cannot change as the user it
// runs as: a SQLite file (or its directory, where the lock file, SQLite's
// journal and a rollback's copy are written) that this user may not write,
// or PostgreSQL tables owned by another role. It is found before anything
// is written.
type NotWritableError struct {
	// Database describes the database; What names what is not writable
	// when it is not the SQLite file itself ("the directory \"/srv\"",
	// "the tables" of a PostgreSQL database).
	Database string
	What     string
	// User is who the tool runs as (for PostgreSQL: the database user);
	// Owner owns what is not writable.
	User, Owner string
	// Why adds what needs it, for a directory.
	Why string
}

func (e *NotWritableError) Error() string {
	if e.postgres() {
		return fmt.Sprintf("%s is not writable by user %s: %s", e.Database, e.User, e.Why)
	}
	msg := fmt.Sprintf("%s is not writable by user %s (owner %s)", e.Database, e.User, e.Owner)
	if e.What != "" {
		msg = fmt.Sprintf("%s of %s is not writable by user %s (owner %s)", e.What, e.Database, e.User, e.Owner)
	}
	if e.Why != "" {
		msg += ": " + e.Why
	}
	return msg
}

// Class is fault.Permission.
func (e *NotWritableError) Class() fault.Class { return fault.Permission }

// Hint says whom to run it as.
func (e *NotWritableError) Hint() string {
	if e.postgres() {
		return fmt.Sprintf("nothing was changed: run it with the homeserver's database user (the database args of <config>), which owns the tables (%s)", e.Owner)
	}
	return fmt.Sprintf("nothing was changed: run it as the homeserver's user, e.g. sudo -u %s followed by the same command", e.Owner)
}

func (e *NotWritableError) postgres() bool { return e.What == "the tables" }

// ErrReadOnlyServer refuses a change on a PostgreSQL server that only
// reads (a hot standby).
var ErrReadOnlyServer = fault.New(fault.Permission, "this server is a read-only replica",
	"nothing was changed: point the database args of <config> at the primary")

// CheckWritable says why the tool, as the user it runs as, cannot change
// the database of dbc (a *NotWritableError, ErrReadOnlyServer), or nil. A
// SQLite file that does not exist yet needs a writable directory. On
// PostgreSQL, alters asks for the schema to be changed (every table owned
// by the user's roles); writes lists the tables whose rows are written.
func CheckWritable(ctx context.Context, dbc config.Database, alters bool, writes ...string) error {
	if dbc.IsSQLite() {
		return checkSQLite(dbc.SQLitePath())
	}
	d, err := db.Open(ctx, dbc, db.Options{ReadOnly: true, AppName: "hsops update_database"})
	if err != nil {
		return err
	}
	defer d.Close()
	return checkPostgres(ctx, d, alters, writes)
}

// checkSQLite checks the file, its directory and the files SQLite and the
// tools write next to it.
func checkSQLite(path string) error {
	desc := fmt.Sprintf("SQLite database %q", path)
	dir := filepath.Dir(path)
	if _, err := os.Stat(path); err == nil && !canWrite(path) {
		return notWritable(desc, "", path, "")
	}
	if st, err := os.Stat(dir); err == nil && st.IsDir() && syscall.Access(dir, 2|1) != nil {
		return notWritable(desc, fmt.Sprintf("the directory %q", dir), dir, "the lock file and SQLite's journal are written there")
	}
	for _, side := range []string{path + "-wal", path + "-shm", path + "-journal", schema.LockPath(path)} {
		if _, err := os.Stat(side); err == nil && !canWrite(side) {
			return notWritable(desc, fmt.Sprintf("the file %q", filepath.Base(side)), side, "")
		}
	}
	return nil
}

func canWrite(path string) bool { return syscall.Access(path, 2) == nil }

func notWritable(desc, what, path, why string) error {
	return &NotWritableError{Database: desc, What: what, User: currentUser(), Owner: ownerOf(path), Why: why}
}

// currentUser names the user the process runs as.
func currentUser() string {
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return "uid " + strconv.Itoa(os.Getuid())
}

// ownerOf names the owner of a file.
func ownerOf(path string) string {
	st, err := os.Stat(path)
	if err != nil {
		return "unknown"
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return "unknown"
	}
	id := strconv.FormatUint(uint64(sys.Uid), 10)
	if u, err := user.LookupId(id); err == nil {
		return u.Username
	}
	return "uid " + id
}

// checkPostgres refuses a standby, and tables the session's user may not
// change: for alters, tables not owned by one of its roles; for writes,
// tables it lacks INSERT, UPDATE or DELETE on.
func checkPostgres(ctx context.Context, d *db.DB, alters bool, writes []string) error {
	var recovery bool
	if err := d.QueryRowContext(ctx, "SELECT pg_is_in_recovery()").Scan(&recovery); err != nil {
		return err
	}
	if recovery {
		return fmt.Errorf("%w: %s is a hot standby (pg_is_in_recovery)", ErrReadOnlyServer, d.Desc)
	}
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
	return &NotWritableError{Database: d.Desc, What: "the tables", User: me, Owner: owner, Why: why}
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
