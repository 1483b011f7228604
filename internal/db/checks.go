package db

import (
	"context"
	"fmt"
	"strings"

	"hsops/internal/fault"
)

// Server requirements, as Synapse v1.98 enforces them.
const (
	// MinPostgres is PostgreSQL 11 (server_version_num).
	MinPostgres = 110000
	// MinSQLite is SQLite 3.27.0.
	MinSQLite = 3027000
)

// Sentinel errors of the server checks.
var (
	// ErrServerTooOld means the engine's version is below the minimum.
	ErrServerTooOld = fault.New(fault.Version, "database server too old",
		"nothing was changed: PostgreSQL 11 or newer (SQLite 3.27 or newer) is required: upgrade the database server")
	// ErrBadEncoding means a PostgreSQL database is not UTF8.
	ErrBadEncoding = fault.New(fault.Version, "database has incorrect encoding", createdbHint)
	// ErrBadLocale means a PostgreSQL database's collation or ctype is not C.
	ErrBadLocale = fault.New(fault.Version, "database has incorrect locale", createdbHint)
)

// createdbHint is how a database the homeserver can use is created.
const createdbHint = "nothing was changed: create the database with\n  createdb --encoding=UTF8 --locale=C --template=template0 --owner=<user> <name>"

// Locale is a PostgreSQL database's encoding and locale.
type Locale struct {
	Encoding, Collate, CType string
}

// PostgresLocale reads the current database's encoding, collation and ctype.
func PostgresLocale(ctx context.Context, d *DB) (Locale, error) {
	var l Locale
	if err := d.QueryRowContext(ctx, "SHOW server_encoding").Scan(&l.Encoding); err != nil {
		return l, fmt.Errorf("read server encoding: %w", err)
	}
	err := d.QueryRowContext(ctx, "SELECT datcollate, datctype FROM pg_database WHERE datname = current_database()").Scan(&l.Collate, &l.CType)
	if err != nil {
		return l, fmt.Errorf("read database locale: %w", err)
	}
	return l, nil
}

// CheckServer applies Synapse's start-up checks: PostgreSQL 11 or newer, a
// UTF8 database with C collation and ctype (unless allowUnsafeLocale);
// SQLite 3.27 or newer (unless allowOldSQLite, which the porter uses for its
// source, as Synapse's does).
func CheckServer(ctx context.Context, d *DB, allowUnsafeLocale, allowOldSQLite bool) error {
	n, human, err := d.ServerVersion(ctx)
	if err != nil {
		return fmt.Errorf("read server version: %w", err)
	}
	if d.Engine == SQLite {
		if n < MinSQLite && !allowOldSQLite {
			return fmt.Errorf("%w: SQLite %s; 3.27 or above is required", ErrServerTooOld, human)
		}
		return nil
	}
	if n < MinPostgres {
		return fmt.Errorf("%w: PostgreSQL %s; 11 or above is required", ErrServerTooOld, human)
	}
	l, err := PostgresLocale(ctx, d)
	if err != nil {
		return err
	}
	if !strings.EqualFold(l.Encoding, "UTF8") {
		return fmt.Errorf("%w: %q instead of 'UTF8'", ErrBadEncoding, l.Encoding)
	}
	if allowUnsafeLocale {
		return nil
	}
	if bad := l.notC(); len(bad) > 0 {
		return fmt.Errorf("%w: %s; it should be 'C' (a database already in use can be kept with allow_unsafe_locale: true in the database config; a new one must be created with C)", ErrBadLocale, strings.Join(bad, ", "))
	}
	return nil
}

// notC lists what of the collation and ctype is not C.
func (l Locale) notC() []string {
	var bad []string
	if l.Collate != "C" {
		bad = append(bad, fmt.Sprintf("COLLATE is %q", l.Collate))
	}
	if l.CType != "C" {
		bad = append(bad, fmt.Sprintf("CTYPE is %q", l.CType))
	}
	return bad
}

// CheckNewPostgres is the stricter check for a database about to be created:
// collation and ctype must be C, with no override.
func CheckNewPostgres(ctx context.Context, d *DB) error {
	l, err := PostgresLocale(ctx, d)
	if err != nil {
		return err
	}
	if bad := l.notC(); len(bad) > 0 {
		return fmt.Errorf("%w: new databases need C collation and ctype, and %s", ErrBadLocale, strings.Join(bad, ", "))
	}
	return nil
}
