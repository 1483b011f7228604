// Package db opens homeserver databases and hides the few differences between
// SQLite and PostgreSQL that the schema code must not care about.
//
// Both engines are used through database/sql: SQLite through the cgo-free
// modernc.org/sqlite driver, PostgreSQL through pgx's stdlib adapter, so that
// the same schema, background-update and tool code runs on both. Code that
// needs PostgreSQL's native protocol (COPY, advisory locks on one session)
// reaches the pgx connection with Conn.Raw.
//
// SQLite connections get foreign_keys=ON and a busy timeout, and begin their
// transactions with BEGIN IMMEDIATE so a writer takes the write lock up front
// instead of failing half-way. The journal mode of a user's file is never
// changed.
package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"hsops/internal/config"
	"hsops/internal/fault"
)

// Engine identifies a database engine. Its value is the suffix of
// engine-specific schema files (".sql.sqlite", ".sql.postgres").
type Engine string

// The two engines.
const (
	SQLite   Engine = "sqlite"
	Postgres Engine = "postgres"
)

// Sentinel errors for the failure classes a user can hit when opening.
var (
	// ErrNotFound means the SQLite file does not exist.
	ErrNotFound = fault.New(fault.Database, "database file not found",
		"check database.args.database in <config>; update_database --database-config <config> creates a new database")
	// ErrUnreachable means the PostgreSQL server could not be reached or
	// refused the login.
	ErrUnreachable = fault.New(fault.Database, "cannot connect to database",
		"check that PostgreSQL is running and that host, port, user, password and dbname in the database args of <config> are right")
	// ErrCannotCreate means a new SQLite file cannot be created where the
	// config says (no such directory, or not writable).
	ErrCannotCreate = fault.New(fault.Database, "cannot create the SQLite database",
		"create that directory, or point database.args.database in <config> at a writable place")
	// ErrNotDatabase means the file is not a SQLite database or is corrupt.
	ErrNotDatabase = fault.New(fault.Database, "not a valid SQLite database",
		"database.args.database in <config> must point at a homeserver's SQLite database file")
)

// Options tune Open.
type Options struct {
	// ReadOnly opens SQLite files read-only; on PostgreSQL every statement
	// runs in a read-only transaction (BEGIN READ ONLY), never in a
	// read-only session, which target_session_attrs=read-write would take
	// for a standby and refuse.
	ReadOnly bool
	// Create allows a missing SQLite file to be created.
	Create bool
	// AppName is sent as PostgreSQL's application_name, so that a lock
	// holder can be named to another process.
	AppName string
	// MaxConns bounds the pool. Zero means 1 for SQLite and 8 for PostgreSQL.
	MaxConns int
	// BusyTimeout is how long SQLite waits for a lock held by another
	// process. Zero means 10 seconds.
	BusyTimeout time.Duration
}

// DB is an open database.
type DB struct {
	*sql.DB
	Engine Engine
	// Label is the config label ("master", or the databases key).
	Label string
	// Desc describes the database for messages, without secrets.
	Desc string
	// Path is the SQLite file path.
	Path string
	// ConnConfig is the PostgreSQL connection configuration.
	ConnConfig *pgx.ConnConfig
	// DataStores are the logical databases the configuration puts here.
	DataStores []string
}

// Querier is what sql.DB, sql.Conn and sql.Tx have in common.
type Querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// Open opens the physical database described by cfg.
func Open(ctx context.Context, cfg config.Database, opts Options) (*DB, error) {
	var (
		d   *DB
		err error
	)
	switch {
	case cfg.IsSQLite():
		d, err = OpenSQLite(ctx, cfg.SQLitePath(), opts)
	case cfg.IsPostgres():
		d, err = openPostgres(ctx, cfg, opts)
	default:
		return nil, fmt.Errorf("unsupported database type %q", cfg.Name)
	}
	if err != nil {
		return nil, err
	}
	d.Label = cfg.Label
	d.DataStores = cfg.DataStores
	return d, nil
}

// OpenSQLite opens a SQLite file.
func OpenSQLite(ctx context.Context, path string, opts Options) (*DB, error) {
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if !opts.Create || opts.ReadOnly {
			return nil, fmt.Errorf("%w: %q", ErrNotFound, path)
		}
		if err := CheckCreatable(path); err != nil {
			return nil, err
		}
	case err != nil:
		return nil, fmt.Errorf("open %q: %w", path, err)
	case st.IsDir():
		return nil, fmt.Errorf("%w: %q is a directory", ErrNotDatabase, path)
	}
	busy := opts.BusyTimeout
	if busy == 0 {
		busy = 10 * time.Second
	}
	q := url.Values{}
	q.Add("_pragma", "busy_timeout("+strconv.FormatInt(busy.Milliseconds(), 10)+")")
	q.Add("_pragma", "foreign_keys(1)")
	switch {
	case opts.ReadOnly && canWrite(path):
		// Read-write mode with query_only: no write is possible, and as the
		// last connection to close SQLite still removes the -wal and -shm
		// files of a WAL database, which a mode=ro connection would leave.
		q.Set("mode", "rw")
		q.Add("_pragma", "query_only(1)")
	case opts.ReadOnly:
		q.Set("mode", "ro")
	case opts.Create:
		q.Set("mode", "rwc")
		q.Set("_txlock", "immediate")
	default:
		q.Set("mode", "rw")
		q.Set("_txlock", "immediate")
	}
	dsn := "file:" + escapePath(path) + "?" + q.Encode()
	sdb, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open %q: %w", path, err)
	}
	n := opts.MaxConns
	if n == 0 {
		n = 1
	}
	sdb.SetMaxOpenConns(n)
	sdb.SetMaxIdleConns(n)
	sdb.SetConnMaxIdleTime(0)
	// Reading the schema forces SQLite to read the header: a text file or a
	// corrupt one fails here rather than at the first real query.
	var count int
	if err := sdb.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_master").Scan(&count); err != nil {
		sdb.Close()
		msg := err.Error()
		if strings.Contains(msg, "file is not a database") || strings.Contains(msg, "malformed") || strings.Contains(msg, "SQLITE_NOTADB") || strings.Contains(msg, "(26)") || strings.Contains(msg, "(11)") {
			return nil, fmt.Errorf("%w: %q: %s", ErrNotDatabase, path, msg)
		}
		return nil, fmt.Errorf("open %q: %w", path, err)
	}
	return &DB{DB: sdb, Engine: SQLite, Desc: fmt.Sprintf("SQLite database %q", path), Path: path}, nil
}

// CheckCreatable says why a new SQLite file cannot be created at path
// (ErrCannotCreate: no such directory, or not writable), or nil.
func CheckCreatable(path string) error {
	dir := filepath.Dir(path)
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return fmt.Errorf("%w: %q: its directory %q does not exist", ErrCannotCreate, path, dir)
	}
	if syscall.Access(dir, 2) != nil {
		return fmt.Errorf("%w: %q: its directory %q is not writable", ErrCannotCreate, path, dir)
	}
	return nil
}

// canWrite reports whether the process may write the file and its
// directory (where SQLite keeps its journal).
func canWrite(path string) bool {
	if syscall.Access(path, 2) != nil {
		return false
	}
	return syscall.Access(filepath.Dir(path), 2) == nil
}

// escapePath makes a file path safe inside a file: URI.
func escapePath(p string) string {
	r := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23")
	return r.Replace(p)
}

func openPostgres(ctx context.Context, cfg config.Database, opts Options) (*DB, error) {
	cc, err := PostgresConnConfig(cfg, opts.AppName)
	if err != nil {
		return nil, err
	}
	if cc.ConnectTimeout == 0 {
		cc.ConnectTimeout = 10 * time.Second
	}
	desc := fmt.Sprintf("PostgreSQL database %s", cfg)
	var connOpts []stdlib.OptionOpenDB
	if cfg.Args["load_balance_hosts"] == "random" {
		// Each new connection draws its own order of the hosts.
		connOpts = append(connOpts, stdlib.OptionBeforeConnect(func(_ context.Context, c *pgx.ConnConfig) error {
			shuffleHosts(c)
			return nil
		}))
	}
	connector := stdlib.GetConnector(*cc, connOpts...)
	if opts.ReadOnly {
		connector = readOnlyConnector{connector}
	}
	sdb := sql.OpenDB(connector)
	n := opts.MaxConns
	if n == 0 {
		n = 8
	}
	sdb.SetMaxOpenConns(n)
	sdb.SetMaxIdleConns(n)
	if err := sdb.PingContext(ctx); err != nil {
		sdb.Close()
		return nil, fmt.Errorf("%w: %s: %s", ErrUnreachable, desc, connectCause(err, cc.Password))
	}
	return &DB{DB: sdb, Engine: Postgres, Desc: desc, ConnConfig: cc}, nil
}

// connectCause reduces a pgx connection error to its cause, without the
// password even if a server echoed it.
func connectCause(err error, password string) string {
	msg := err.Error()
	if password != "" {
		msg = strings.ReplaceAll(msg, password, "********")
	}
	// pgx says "failed to connect to `user=... database=...`:" and then one
	// tab-indented line per address and attempt; an operator needs the
	// distinct causes, on one line.
	if strings.HasPrefix(msg, "failed to connect to `") {
		if i := strings.Index(msg[len("failed to connect to `"):], "`:"); i >= 0 {
			msg = msg[len("failed to connect to `")+i+2:]
		}
	}
	var causes []string
	for _, line := range strings.Split(msg, "\n") {
		line = strings.TrimSpace(line)
		// With sslmode prefer, a server without TLS first refuses it; the
		// plain attempt that follows says what really went wrong.
		if line == "" || strings.HasSuffix(line, "tls error: server refused TLS connection") {
			continue
		}
		if !slices.Contains(causes, line) {
			causes = append(causes, line)
		}
	}
	if len(causes) == 0 {
		return strings.TrimSpace(msg)
	}
	return strings.Join(causes, "; ")
}

// Rebind rewrites ? placeholders to $1, $2 ... for PostgreSQL. Question marks
// inside quoted strings are left alone.
func (d *DB) Rebind(q string) string { return Rebind(d.Engine, q) }

// Rebind is DB.Rebind for code that has only the engine.
func Rebind(e Engine, q string) string {
	if e != Postgres || !strings.Contains(q, "?") {
		return q
	}
	var b strings.Builder
	n := 0
	inQuote := false
	for _, r := range q {
		switch {
		case r == '\'':
			inQuote = !inQuote
			b.WriteRune(r)
		case r == '?' && !inQuote:
			n++
			b.WriteString("$" + strconv.Itoa(n))
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// QuoteIdent quotes an identifier for either engine.
func QuoteIdent(name string) string {
	return `"` + strings.ReplaceAll(name, `"`, `""`) + `"`
}

// Tables lists the base tables of the database (PostgreSQL: the current
// schema; SQLite: ordinary and virtual tables, not sqlite_* internals).
func (d *DB) Tables(ctx context.Context, q Querier) ([]string, error) {
	var query string
	if d.Engine == Postgres {
		query = `SELECT table_name FROM information_schema.tables
			WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY table_name`
	} else {
		query = `SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name`
	}
	rows, err := q.QueryContext(ctx, query)
	if err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, rows.Err()
}

// TableExists reports whether a table exists.
func (d *DB) TableExists(ctx context.Context, q Querier, name string) (bool, error) {
	var query string
	if d.Engine == Postgres {
		query = `SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = $1`
	} else {
		query = `SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?`
	}
	var n int
	if err := q.QueryRowContext(ctx, query, name).Scan(&n); err != nil {
		return false, fmt.Errorf("look up table %q: %w", name, err)
	}
	return n > 0, nil
}

// Columns lists a table's column names in order.
func (d *DB) Columns(ctx context.Context, q Querier, table string) ([]string, error) {
	var query string
	if d.Engine == Postgres {
		query = `SELECT column_name FROM information_schema.columns
			WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position`
	} else {
		query = `SELECT name FROM pragma_table_info(?) ORDER BY cid`
	}
	rows, err := q.QueryContext(ctx, query, table)
	if err != nil {
		return nil, fmt.Errorf("list columns of %q: %w", table, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, rows.Err()
}

// ServerVersion returns the engine's version: PostgreSQL's server_version_num
// (e.g. 150018) or SQLite's library version number (e.g. 3054001).
func (d *DB) ServerVersion(ctx context.Context) (int, string, error) {
	var s string
	if d.Engine == Postgres {
		if err := d.QueryRowContext(ctx, "SHOW server_version_num").Scan(&s); err != nil {
			return 0, "", err
		}
		n, _ := strconv.Atoi(s)
		var human string
		if err := d.QueryRowContext(ctx, "SHOW server_version").Scan(&human); err != nil {
			return 0, "", err
		}
		return n, human, nil
	}
	if err := d.QueryRowContext(ctx, "SELECT sqlite_version()").Scan(&s); err != nil {
		return 0, "", err
	}
	parts := strings.Split(s, ".")
	n := 0
	for i := 0; i < 3; i++ {
		v := 0
		if i < len(parts) {
			v, _ = strconv.Atoi(parts[i])
		}
		n = n*1000 + v
	}
	return n, s, nil
}

// Truthy reads a boolean that SQLite stores as an integer and PostgreSQL as
// a boolean (or either as text: "1", "t", "true").
func Truthy(v any) bool {
	switch x := v.(type) {
	case bool:
		return x
	case int64:
		return x != 0
	case int:
		return x != 0
	case float64:
		return x != 0
	case []byte:
		return truthyString(string(x))
	case string:
		return truthyString(x)
	}
	return false
}

func truthyString(s string) bool {
	s = strings.ToLower(strings.TrimSpace(s))
	if n, err := strconv.Atoi(s); err == nil {
		return n != 0
	}
	return s == "t" || s == "true"
}
