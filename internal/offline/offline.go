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
)

// ErrInUse is the refusal to change a database a homeserver is using.
var ErrInUse = fault.New(fault.InUse, "the database is in use", "")

// Options tune Open.
type Options struct {
	// AppName is the PostgreSQL application_name of the session. Sessions
	// of "hsops update_database" tools are not counted as users.
	AppName string
	// Force skips the refusals.
	Force bool
	// Before runs after the homeserver was found stopped and before the
	// database is opened: a copy of a PostgreSQL database (CREATE DATABASE
	// ... TEMPLATE) is made while nobody is connected to it.
	Before func(ctx context.Context) error
}

// Open opens dbc for writing, unless (without Force) the homeserver of cfg
// is running on it, another process has the SQLite file open, or other
// sessions are connected to the PostgreSQL database.
func Open(ctx context.Context, cfg *config.Config, dbc config.Database, opts Options) (*db.DB, error) {
	if !opts.Force {
		if err := refuseIfRunning(cfg, dbc); err != nil {
			return nil, err
		}
	}
	if opts.Before != nil {
		if err := opts.Before(ctx); err != nil {
			return nil, err
		}
	}
	d, err := db.Open(ctx, dbc, db.Options{AppName: opts.AppName})
	if err != nil {
		return nil, err
	}
	if d.Engine == db.Postgres && !opts.Force {
		if err := refuseIfSessions(ctx, d); err != nil {
			d.Close()
			return nil, err
		}
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
func RefuseInUse(cfg *config.Config, dbc config.Database, then string) error {
	t := proc.TargetOf(cfg)
	t.SQLite = nil
	if dbc.IsSQLite() {
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
