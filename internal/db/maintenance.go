package db

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"hsops/internal/config"
)

// WithDBName is a copy of the PostgreSQL database section dbc naming
// another database, name, on the same server.
func WithDBName(dbc config.Database, name string) config.Database {
	c := dbc
	c.Args = make(map[string]string, len(dbc.Args))
	for k, v := range dbc.Args {
		if k != "database" {
			c.Args[k] = v
		}
	}
	c.Args["dbname"] = name
	return c
}

// maintenanceDatabases are the databases every server has, tried in turn.
var maintenanceDatabases = []string{"postgres", "template1"}

// ConnectMaintenance connects to the server of the PostgreSQL database dbc
// through its maintenance database (postgres, else template1), as the
// session app names even over the config's own application_name: CREATE
// DATABASE ... TEMPLATE and DROP DATABASE need the database free of
// sessions, ours included. An error is ErrUnreachable, with the first
// attempt's cause.
func ConnectMaintenance(ctx context.Context, dbc config.Database, app string) (*pgx.Conn, error) {
	var firstErr error
	var password string
	for _, name := range maintenanceDatabases {
		cc, err := PostgresConnConfig(WithDBName(dbc, name), app)
		if err != nil {
			return nil, err
		}
		if cc.ConnectTimeout == 0 {
			cc.ConnectTimeout = 10 * time.Second
		}
		cc.RuntimeParams["application_name"] = app
		conn, err := pgx.ConnectConfig(ctx, cc)
		if err == nil {
			return conn, nil
		}
		if firstErr == nil {
			firstErr, password = err, cc.Password
		}
	}
	return nil, fmt.Errorf("%w: the postgres database beside %s: %s", ErrUnreachable, dbc, connectCause(firstErr, password))
}
