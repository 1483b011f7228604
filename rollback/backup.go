package rollback

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/jackc/pgx/v5/pgconn"

	"hsops/internal/config"
	"hsops/internal/db"
	"hsops/internal/fault"
	"hsops/internal/offline"
)

// BackupPath names the copy of a SQLite file made before a rollback from
// schema from to schema to: the first free name of
// <file>.before-rollback-<from>-to-<to>[.N].
func BackupPath(path string, from, to int) string {
	base := fmt.Sprintf("%s.before-rollback-%d-to-%d", path, from, to)
	p := base
	for n := 1; ; n++ {
		if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
			return p
		}
		p = fmt.Sprintf("%s.%d", base, n)
	}
}

// BackupPostgres copies a PostgreSQL database to a new database named name
// with CREATE DATABASE ... TEMPLATE, from a connection to the maintenance
// database: PostgreSQL copies a database only while nobody is connected to
// it. named says the tool chose the name (not --backup-database).
func BackupPostgres(ctx context.Context, dbc config.Database, name string, named bool) error {
	orSkip := "or take a copy yourself first (pg_dump -Fc) and add --no-backup"
	maint, err := db.ConnectMaintenance(ctx, dbc, appName)
	if err != nil {
		return fault.Wrap(fault.Backup, fmt.Errorf("%w: %v", ErrBackup, err),
			"nothing was changed: the copy is made from the postgres database, which this user must be able to reach; "+orSkip)
	}
	defer maint.Close(context.WithoutCancel(ctx))
	_, err = maint.Exec(ctx, fmt.Sprintf("CREATE DATABASE %s TEMPLATE %s", db.QuoteIdent(name), db.QuoteIdent(dbc.DBName())))
	var pgErr *pgconn.PgError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &pgErr) && pgErr.Code == "42P04":
		hint := "nothing was changed: choose another --backup-database name, or drop that database first"
		if named {
			hint = "nothing was changed: it was created meanwhile: run the same command again (it names the copy again)"
		}
		return fault.Wrap(fault.Backup, fmt.Errorf("%w: database %q already exists", ErrBackup, name), hint)
	case errors.As(err, &pgErr) && pgErr.Code == "55006":
		return fault.Wrap(fault.InUse, fmt.Errorf("%w: other sessions are connected to %q, and PostgreSQL copies a database only while nobody is", offline.ErrInUse, dbc.DBName()),
			"stop the homeserver and its workers, then run the same command again")
	case errors.As(err, &pgErr) && pgErr.Code == "42501":
		return fault.Wrap(fault.Backup, fmt.Errorf("%w: the copy %s cannot be made: %s", ErrBackup, name, pgErr.Message),
			"nothing was changed: the copy needs the CREATEDB privilege (ALTER ROLE ... CREATEDB); "+orSkip)
	case fault.IsInterrupted(err):
		return err
	}
	return fault.Wrap(fault.Backup, fmt.Errorf("%w: the copy %s cannot be made: %v", ErrBackup, name, err),
		"nothing was changed: fix the cause (space, CREATEDB privilege), "+orSkip)
}

// DropCopy drops a copy BackupPostgres made.
func DropCopy(ctx context.Context, dbc config.Database, name string) error {
	maint, err := db.ConnectMaintenance(ctx, dbc, appName)
	if err != nil {
		return err
	}
	defer maint.Close(context.WithoutCancel(ctx))
	_, err = maint.Exec(ctx, "DROP DATABASE "+db.QuoteIdent(name))
	return err
}
