// Package pgtest gives tests a real PostgreSQL database.
//
// If HSOPS_TEST_PG_URL is set (a URL of a role that may create databases,
// e.g. postgres://postgres@127.0.0.1:5432/postgres) it is used. Otherwise the
// first test that asks starts a throwaway cluster (internal/pgcluster: the
// initdb and pg_ctl on the machine, listening on 127.0.0.1 only). Packages
// that use it call Main from TestMain so the cluster is stopped at the end.
//
// Every test gets its own empty database (UTF8, C collation and ctype, from
// template0). Creating a database costs a quarter of a second, so at
// cleanup a database is emptied (its sessions ended, its schemas dropped)
// and handed to the next test of the process; the rest are dropped at the
// end. When CI=true and no server can be had,
// tests fail instead of skipping.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"hsops/internal/config"
	"hsops/internal/pgcluster"
)

// EnvURL names the variable holding an externally provided server URL.
const EnvURL = pgcluster.EnvURL

var (
	once     sync.Once
	adminURL string
	startErr error
	cluster  *pgcluster.Cluster
)

// Main runs the tests and stops a cluster this process started.
func Main(m interface{ Run() int }) {
	code := m.Run()
	Stop()
	os.Exit(code)
}

// Stopping wraps a test main so that the cluster stops after the tests.
func Stopping(m interface{ Run() int }) interface{ Run() int } { return stopping{m} }

type stopping struct{ m interface{ Run() int } }

func (s stopping) Run() int {
	code := s.m.Run()
	Stop()
	return code
}

// shortSettings are the server settings of the -short loop's clusters:
// WAL only for crash safety (no replication: the hot-standby test, which
// needs it, is left out by -short), no autovacuum. They save about a fifth
// of the server's CPU time, most of the loop's. The full run keeps the
// defaults, as production servers have them.
func shortSettings() []string {
	if !testing.Short() {
		return nil
	}
	return []string{"wal_level=minimal", "max_wal_senders=0", "autovacuum=off"}
}

// Stop drops the pooled databases and stops the cluster this process
// started, if any.
func Stop() {
	if cluster == nil && adminURL != "" {
		pool.drain()
	}
	if cluster != nil {
		cluster.Stop()
		cluster = nil
	}
}

// Admin returns the URL of a role that can create databases, starting a
// cluster on first use.
func Admin() (string, error) {
	once.Do(func() {
		if u := os.Getenv(EnvURL); u != "" {
			adminURL = u
			return
		}
		cluster, startErr = pgcluster.Start(shortSettings()...)
		if startErr == nil {
			adminURL = cluster.AdminURL()
		}
	})
	if startErr != nil {
		return "", startErr
	}
	if adminURL == "" {
		return "", fmt.Errorf("no PostgreSQL server")
	}
	return adminURL, nil
}

// AdminURL is Admin for tests: it fails (CI) or skips the test when no
// server can be had.
func AdminURL(tb testing.TB) string {
	tb.Helper()
	u, err := Admin()
	if err != nil {
		msg := fmt.Sprintf("no PostgreSQL available (set %s or install initdb/pg_ctl): %v", EnvURL, err)
		if os.Getenv("CI") == "true" {
			tb.Fatal(msg)
		}
		tb.Skip(msg)
	}
	return u
}

// Database is a fresh database for one test.
type Database struct {
	Name   string
	URL    string
	Config config.Database
}

// NewDatabase creates an empty UTF8 / C-locale database dropped at cleanup.
func NewDatabase(tb testing.TB) Database {
	tb.Helper()
	return NewDatabaseWithLocale(tb, "C")
}

// NewDatabaseWithLocale creates a database with the given collation and
// ctype (for locale-check tests, e.g. "C.UTF-8").
func NewDatabaseWithLocale(tb testing.TB, locale string) Database {
	tb.Helper()
	AdminURL(tb)
	d, ok := pool.take(locale)
	if !ok {
		var err error
		if d, err = Create(locale); err != nil {
			tb.Fatal(err)
		}
	}
	tb.Cleanup(func() {
		if err := reset(d.Name); err == nil {
			pool.give(locale, d)
			return
		}
		if err := DropDatabase(d.Name); err != nil {
			tb.Error(err)
		}
	})
	return d
}

// databasePool holds emptied databases for reuse, by locale.
type databasePool struct {
	mu   sync.Mutex
	free map[string][]Database
}

var pool = &databasePool{free: map[string][]Database{}}

func (p *databasePool) take(locale string) (Database, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	list := p.free[locale]
	if len(list) == 0 {
		return Database{}, false
	}
	d := list[len(list)-1]
	p.free[locale] = list[:len(list)-1]
	return d, true
}

func (p *databasePool) give(locale string, d Database) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.free[locale] = append(p.free[locale], d)
}

// drain drops the pooled databases (on a server this process did not
// start, which outlives the tests).
func (p *databasePool) drain() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, list := range p.free {
		for _, d := range list {
			_ = DropDatabase(d.Name)
		}
	}
	p.free = map[string][]Database{}
}

// reset empties a database for its next test: it ends the sessions still
// connected, drops every schema but the system ones and recreates public
// as a new database has it.
func reset(name string) error {
	d, err := describe(adminURL, name)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, d.URL)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE datname = current_database() AND pid <> pg_backend_pid()`); err != nil {
		return err
	}
	rows, err := conn.Query(ctx, `SELECT nspname FROM pg_namespace
		WHERE nspname NOT LIKE 'pg\_%' AND nspname <> 'information_schema'`)
	if err != nil {
		return err
	}
	var schemas []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return err
		}
		schemas = append(schemas, n)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	q := ""
	for _, n := range schemas {
		q += fmt.Sprintf("DROP SCHEMA %s CASCADE; ", pgx.Identifier{n}.Sanitize())
	}
	q += "CREATE SCHEMA public AUTHORIZATION pg_database_owner; GRANT USAGE ON SCHEMA public TO PUBLIC;"
	_, err = conn.Exec(ctx, q)
	return err
}

// Create makes a new database with the given locale on the test server.
func Create(locale string) (Database, error) {
	return createDatabase("create test database", func(name string) string {
		return fmt.Sprintf(`CREATE DATABASE %s ENCODING 'UTF8' LC_COLLATE '%s' LC_CTYPE '%s' TEMPLATE template0`, name, locale, locale)
	})
}

// createDatabase makes a database of a new name on the test server with
// the statement create gives for that name; what names the step in an
// error.
func createDatabase(what string, create func(name string) string) (Database, error) {
	admin, err := Admin()
	if err != nil {
		return Database{}, err
	}
	name := "hsops_t_" + randomHex(6)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return Database{}, fmt.Errorf("connect to test server: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, create(name)); err != nil {
		return Database{}, fmt.Errorf("%s: %w", what, err)
	}
	return describe(admin, name)
}

func describe(admin, name string) (Database, error) {
	u, err := url.Parse(admin)
	if err != nil {
		return Database{}, fmt.Errorf("parse %s: %w", EnvURL, err)
	}
	u.Path = "/" + name
	cc, err := pgx.ParseConfig(u.String())
	if err != nil {
		return Database{}, fmt.Errorf("parse test database URL: %w", err)
	}
	args := map[string]string{
		"user": cc.User, "host": cc.Host, "port": strconv.Itoa(int(cc.Port)), "dbname": name,
	}
	if cc.Password != "" {
		args["password"] = cc.Password
	}
	if cc.TLSConfig == nil {
		args["sslmode"] = "disable"
	}
	return Database{Name: name, URL: u.String(), Config: config.Database{
		Label: "master", Name: config.EnginePostgres, Args: args, DataStores: []string{"main", "state"}, SynchronousCommit: true,
	}}, nil
}

// DropDatabase removes a database, disconnecting its sessions.
func DropDatabase(name string) error {
	admin, err := Admin()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return fmt.Errorf("connect to drop %s: %w", name, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, fmt.Sprintf(`DROP DATABASE IF EXISTS %s WITH (FORCE)`, name)); err != nil {
		return fmt.Errorf("drop test database %s: %w", name, err)
	}
	return nil
}

// CloneDatabase is Clone for a copy that outlives the test that makes it
// (one a whole package shares): the caller drops it with DropDatabase.
func CloneDatabase(template string) (Database, error) {
	return createDatabase("clone test database "+template, func(name string) string {
		return fmt.Sprintf(`CREATE DATABASE %s TEMPLATE %s`, name, pgx.Identifier{template}.Sanitize())
	})
}

// YAML renders the database as a homeserver.yaml database section.
func (d Database) YAML() string {
	var b strings.Builder
	b.WriteString("database:\n  name: psycopg2\n  args:\n")
	for _, k := range []string{"user", "password", "host", "port", "dbname", "sslmode"} {
		if v, ok := d.Config.Args[k]; ok {
			fmt.Fprintf(&b, "    %s: %q\n", k, v)
		}
	}
	return b.String()
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// Clone creates a copy of the database named template (CREATE DATABASE ...
// TEMPLATE, a file copy: much faster than building the same schema again)
// and drops it at cleanup. No session may be connected to the template.
func Clone(tb testing.TB, template string) Database {
	tb.Helper()
	AdminURL(tb)
	d, err := CloneDatabase(template)
	if err != nil {
		tb.Fatal(err)
	}
	name := d.Name
	tb.Cleanup(func() {
		if err := DropDatabase(name); err != nil {
			tb.Error(err)
		}
	})
	return d
}
