package rehearse

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"hsops/internal/config"
	"hsops/internal/db"
	"hsops/internal/fault"
)

// Scratch copies are named so that anyone can tell what they are and the
// next rehearsal can find those a killed one left:
//
//	SQLite:     <dir>/hsops-rehearse-<file>-<YYYYMMDD-HHMMSS>-<pid>/   (a directory)
//	PostgreSQL: hsops_rehearse_<dbname>_<YYYYMMDDHHMMSS>_<pid>       (a database)
//
// A kept copy (--keep) is renamed hsops-rehearsed-... / hsops_rehearsed_...,
// which only `rehearse --clean` removes. A SQLite scratch directory in use
// holds a lock (flock on its .lock file); a PostgreSQL scratch database in
// use has a session whose application_name is its name.
const (
	sqlitePrefix = "hsops-rehearse-"
	sqliteKept   = "hsops-rehearsed-"
	pgPrefix     = "hsops_rehearse_"
	pgKept       = "hsops_rehearsed_"
	lockName     = ".lock"
)

// ErrScratch means the scratch copy cannot be made (no space, no
// permission): the original is never touched.
var ErrScratch = fault.New(fault.Backup, "cannot make the scratch copy",
	"nothing was changed: make room, or point --scratch-dir at a place with enough free space (SQLite); a PostgreSQL role needs CREATEDB (ALTER ROLE <user> CREATEDB)")

var unsafeChars = regexp.MustCompile(`[^a-zA-Z0-9_]+`)

// stamp is the time and process part of scratch names.
func stamp(t time.Time) (sqlite, pg string) {
	pid := os.Getpid()
	return fmt.Sprintf("%s-%d", t.Format("20060102-150405"), pid), fmt.Sprintf("%s_%d", t.Format("20060102150405"), pid)
}

// sqliteScratchDir is the scratch directory of a SQLite database.
func sqliteScratchDir(dir, dbPath, st string) string {
	return filepath.Join(dir, sqlitePrefix+safeFile(filepath.Base(dbPath))+"-"+st)
}

func safeFile(name string) string {
	return strings.Trim(regexp.MustCompile(`[^a-zA-Z0-9._]+`).ReplaceAllString(name, "_"), "_")
}

// pgBase is the part of a scratch database's name that names its source.
func pgBase(dbname string) string {
	b := strings.ToLower(strings.Trim(unsafeChars.ReplaceAllString(dbname, "_"), "_"))
	if len(b) > 20 {
		b = b[:20]
	}
	return b
}

// pgScratchName is the scratch database of a PostgreSQL database.
func pgScratchName(dbname, st string) string {
	return pgPrefix + pgBase(dbname) + "_" + st
}

// appName marks every session of a rehearsal, so that its scratch database
// is seen in use: the application_name is the scratch database's name
// (both fit PostgreSQL's 63 characters).
func appName(scratch string) string { return scratch }

// sqliteLock is a held scratch-directory lock.
type sqliteLock struct{ f *os.File }

// lockDir creates a scratch directory and takes its lock.
func lockDir(dir string) (*sqliteLock, error) {
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, fmt.Errorf("%w: create %q: %v", ErrScratch, dir, err)
	}
	f, err := os.OpenFile(filepath.Join(dir, lockName), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("%w: %v", ErrScratch, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		os.RemoveAll(dir)
		return nil, fmt.Errorf("%w: lock %q: %v", ErrScratch, dir, err)
	}
	fmt.Fprintf(f, "hsops rehearse, pid %d, started %s\n", os.Getpid(), time.Now().Format(time.RFC3339))
	return &sqliteLock{f: f}, nil
}

func (l *sqliteLock) release() {
	if l != nil && l.f != nil {
		l.f.Close()
		l.f = nil
	}
}

// inUse reports whether a running rehearsal holds a scratch directory.
func inUse(dir string) bool {
	f, err := os.OpenFile(filepath.Join(dir, lockName), os.O_RDWR, 0)
	if err != nil {
		return false // no lock file: killed before it took one
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return true
	}
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return false
}

// cleanSQLite removes the stale scratch directories of a SQLite database in
// dir (and the kept ones too when all is set). It returns what it removed
// and what it left because a rehearsal is using it.
func cleanSQLite(dir, dbPath string, all bool) (removed, busy []string, err error) {
	base := safeFile(filepath.Base(dbPath))
	prefixes := []string{sqlitePrefix + base + "-"}
	if all {
		prefixes = append(prefixes, sqliteKept+base+"-")
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil, nil
		}
		return nil, nil, fmt.Errorf("list %q: %w", dir, err)
	}
	for _, e := range entries {
		if !e.IsDir() || !hasAnyPrefix(e.Name(), prefixes) {
			continue
		}
		path := filepath.Join(dir, e.Name())
		if inUse(path) {
			busy = append(busy, path)
			continue
		}
		if err := os.RemoveAll(path); err != nil {
			return removed, busy, fmt.Errorf("remove %q: %w", path, err)
		}
		removed = append(removed, path)
	}
	return removed, busy, nil
}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// maintenance connects to the server of a PostgreSQL database through
// its maintenance database: CREATE DATABASE ... TEMPLATE needs the source
// free of sessions, ours included.
func maintenance(ctx context.Context, dbc config.Database, app string) (*pgx.Conn, error) {
	conn, err := db.ConnectMaintenance(ctx, dbc, app)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrScratch, err)
	}
	return conn, nil
}

// cleanPostgres drops the stale scratch databases of a PostgreSQL database
// (and the kept ones when all is set).
func cleanPostgres(ctx context.Context, conn *pgx.Conn, dbname string, all bool) (removed, busy []string, err error) {
	prefixes := []string{pgPrefix + pgBase(dbname) + "_"}
	if all {
		prefixes = append(prefixes, pgKept+pgBase(dbname)+"_")
	}
	rows, err := conn.Query(ctx, `SELECT d.datname,
		EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.datname = d.datname OR a.application_name = d.datname)
		FROM pg_database d WHERE d.datname LIKE 'hsops\_rehearse%' ORDER BY 1`)
	if err != nil {
		return nil, nil, fmt.Errorf("list scratch databases: %w", err)
	}
	type cand struct {
		name string
		used bool
	}
	var cands []cand
	for rows.Next() {
		var c cand
		if err := rows.Scan(&c.name, &c.used); err != nil {
			rows.Close()
			return nil, nil, err
		}
		if hasAnyPrefix(c.name, prefixes) {
			cands = append(cands, c)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, nil, err
	}
	for _, c := range cands {
		if c.used {
			busy = append(busy, c.name)
			continue
		}
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{c.name}.Sanitize()); err != nil {
			return removed, busy, fmt.Errorf("drop scratch database %s: %w", c.name, err)
		}
		removed = append(removed, c.name)
	}
	return removed, busy, nil
}
