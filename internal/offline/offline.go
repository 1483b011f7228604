// Package offline opens a database for a change that must be made while
// its homeserver is stopped (a repair, a rollback). It is the one place
// that answers "is the homeserver using this database?" for those changes:
// the homeserver's pid file, another process holding the SQLite file open,
// other sessions connected to the PostgreSQL database. Each refusal can be
// overridden (Force) by an operator who knows better.
package offline

import (
	"context"
	"fmt"
	"strings"

	"hsops/internal/config"
	"hsops/internal/db"
	"hsops/internal/fault"
	"hsops/internal/proc"
	"hsops/schema"
)

// ErrInUse is the refusal to change a database a homeserver is using.
var ErrInUse = fault.New(fault.InUse, "the database is in use", "")

// Options tune Open.
type Options struct {
	// AppName is the PostgreSQL application_name of the session. Sessions
	// of "hsops update_database" tools are not counted as users.
	AppName string
	// Force skips the refusals of a database in use.
	Force bool
	// Alters says the change alters the schema (a rollback); Writes lists
	// the tables whose rows it changes (a repair). PostgreSQL tables the
	// user may not change are refused (see CheckWritable).
	Alters bool
	Writes []string
	// Before runs after every check and before the database is opened for
	// the change: a copy of a PostgreSQL database (CREATE DATABASE ...
	// TEMPLATE) is made while nobody is connected to it.
	Before func(ctx context.Context) error
}

// Open opens dbc for writing. It refuses, before anything is written:
// while another hsops tool holds the schema lock (naming it); a database
// the user cannot write (see CheckWritable); and, without Force, while the
// homeserver of cfg is running on it, another process has the SQLite file
// open, or other sessions are connected to the PostgreSQL database.
func Open(ctx context.Context, cfg *config.Config, dbc config.Database, opts Options) (*db.DB, error) {
	if dbc.IsSQLite() {
		if err := schema.CheckLockFile(dbc.SQLitePath()); err != nil {
			return nil, err
		}
		if err := checkSQLite(dbc.SQLitePath()); err != nil {
			return nil, err
		}
	}
	if !opts.Force {
		if err := refuseIfRunning(cfg, dbc); err != nil {
			return nil, err
		}
	}
	d, err := db.Open(ctx, dbc, db.Options{AppName: opts.AppName})
	if err != nil {
		return nil, err
	}
	if d.Engine == db.Postgres {
		err := schema.CheckLock(ctx, d)
		if err == nil {
			err = db.CheckWritable(ctx, d)
		}
		if err == nil {
			err = checkPostgres(ctx, d, opts.Alters, opts.Writes)
		}
		if err == nil && !opts.Force {
			err = refuseIfSessions(ctx, d)
		}
		if err != nil {
			d.Close()
			return nil, err
		}
	}
	if opts.Before == nil {
		return d, nil
	}
	if d.Engine == db.Postgres {
		// PostgreSQL copies a database only while nobody is connected.
		d.Close()
	}
	if err := opts.Before(ctx); err != nil {
		if d.Engine != db.Postgres {
			d.Close()
		}
		return nil, err
	}
	if d.Engine == db.Postgres {
		return db.Open(ctx, dbc, db.Options{AppName: opts.AppName})
	}
	return d, nil
}

// refuseIfRunning is RefuseInUse with the advice of repair and rollback.
func refuseIfRunning(cfg *config.Config, dbc config.Database) error {
	return RefuseInUse(cfg, dbc, "nothing was changed: run the same command again once it is stopped, then start it; --force goes ahead anyway")
}

// RefuseInUse refuses when the homeserver of the config (proc's guard:
// pid file, start time and config) runs on the database, or another
// process holds its SQLite file; then is the advice given after the
// holder's.
//
// Another hsops tool at work on a SQLite database (holding its schema
// lock, and so its file) is named as the lock's holder: that one is waited
// for, not stopped.
func RefuseInUse(cfg *config.Config, dbc config.Database, then string) error {
	t := proc.TargetOf(cfg)
	t.SQLite = nil
	if dbc.IsSQLite() {
		if err := schema.CheckLockFile(dbc.SQLitePath()); err != nil {
			return err
		}
		t.SQLite = []string{dbc.SQLitePath()}
	}
	if err := proc.HomeserverRunning(t).Refusal(then); err != nil {
		return fault.Wrap(fault.InUse, fmt.Errorf("%w: %w", ErrInUse, err), fault.HintOf(err))
	}
	return nil
}

// refuseIfSessions refuses when other sessions are connected to the
// PostgreSQL database (a running homeserver or worker).
func refuseIfSessions(ctx context.Context, d *db.DB) error {
	rows, err := d.QueryContext(ctx, `SELECT pid, coalesce(application_name, ''), coalesce(host(client_addr), 'local')
		FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'`)
	if err != nil {
		return err
	}
	defer rows.Close()
	var who []string
	for rows.Next() {
		var pid int
		var app, addr string
		if err := rows.Scan(&pid, &app, &addr); err != nil {
			return err
		}
		if strings.HasPrefix(app, "hsops update_database") {
			continue
		}
		if app == "" {
			app = "a client"
		}
		who = append(who, fmt.Sprintf("%s (server pid %d, from %s)", app, pid, addr))
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if len(who) == 0 {
		return nil
	}
	return fault.Errorf(fault.InUse, "stop the homeserver and its workers first; if those sessions are not a homeserver, add --force",
		"%w: %d other session(s) are connected: %s", ErrInUse, len(who), strings.Join(who, "; "))
}
