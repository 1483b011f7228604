package load

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"hsops/internal/config"
	"hsops/internal/gen"
)

// benchParams are the generator's parameters for a benchmark database of
// n messages: users, rooms and their state, messages, and everything a
// homeserver writes with them (about 8 rows per message).
func benchParams(n int) gen.Params {
	return gen.Params{ServerName: "example.org", Users: max(n/1000, 50), Rooms: max(n/5000, 10), Messages: n,
		MembersPerRoom: 20, Backfilled: 10, Seed: 1, TxSize: 20000}
}

// generateSQLite generates the SQLite database path of n messages at schema
// version (0: the newest) unless it is there from an earlier run
// (generating 1,000,000 messages takes minutes), and returns the time the
// generation took (0 when it was there). It is written to a temporary name
// and renamed, so that an interrupted generation is never reused.
func generateSQLite(ctx context.Context, path string, version, n int, say func(string)) (time.Duration, error) {
	if _, err := os.Stat(path); err == nil {
		return 0, nil
	}
	say(fmt.Sprintf("generating %s (%s)...", path, messagesAt(n, version)))
	t0 := time.Now()
	tmp := path + ".tmp"
	_ = os.Remove(tmp)
	if _, err := gen.Fill(ctx, config.Database{Name: config.EngineSQLite, Args: map[string]string{"database": tmp}}, version, benchParams(n)); err != nil {
		return 0, err
	}
	return time.Since(t0), os.Rename(tmp, path)
}

// messagesAt says how many messages a generated database has, and at which
// schema version when it is not the newest.
func messagesAt(n, version int) string {
	if version == 0 {
		return fmt.Sprintf("%d messages", n)
	}
	return fmt.Sprintf("%d messages at schema %d", n, version)
}

// createBenchDatabase creates the database name, empty, in UTF8 with the C
// locale, on admin's server, in place of one of that name left by an
// earlier run.
func createBenchDatabase(ctx context.Context, admin *pgx.Conn, name string) error {
	dropBenchDatabase(ctx, admin, name)
	_, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()+" ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0")
	return err
}

// dropBenchDatabase drops the database name, and the sessions on it.
func dropBenchDatabase(ctx context.Context, admin *pgx.Conn, name string) {
	_, _ = admin.Exec(context.WithoutCancel(ctx), "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
}

// databaseConfig is a database section for a database of the server the
// admin URL points at.
func databaseConfig(adminURL, name string) (config.Database, error) {
	u, err := url.Parse(adminURL)
	if err != nil {
		return config.Database{}, err
	}
	u.Path = "/" + name
	cc, err := pgx.ParseConfig(u.String())
	if err != nil {
		return config.Database{}, err
	}
	args := map[string]string{"host": cc.Host, "port": fmt.Sprint(cc.Port), "user": cc.User, "dbname": name, "sslmode": "disable"}
	if cc.Password != "" {
		args["password"] = cc.Password
	}
	return config.Database{Label: "master", Name: config.EnginePostgres, Args: args, DataStores: []string{"main", "state"}}, nil
}

// writePostgresConfig writes a homeserver config whose database is the
// PostgreSQL database dbc (a database section databaseConfig made).
func writePostgresConfig(path string, dbc config.Database) error {
	var y strings.Builder
	y.WriteString("server_name: example.org\ndatabase:\n  name: psycopg2\n  args:\n")
	for _, k := range []string{"host", "port", "user", "password", "dbname", "sslmode"} {
		if v, ok := dbc.Args[k]; ok {
			fmt.Fprintf(&y, "    %s: %q\n", k, v)
		}
	}
	return os.WriteFile(path, []byte(y.String()), 0o600)
}

// writeSQLiteConfig writes a homeserver config whose database is the SQLite
// file dbPath.
func writeSQLiteConfig(path, dbPath string) error {
	return os.WriteFile(path, []byte(fmt.Sprintf("server_name: example.org\ndatabase:\n  name: sqlite3\n  args:\n    database: %s\n", dbPath)), 0o600)
}
