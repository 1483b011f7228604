package schema

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"

	"hsops/internal/db"
	"hsops/internal/fault"
)

// lockKey is the PostgreSQL advisory lock taken while changing the schema
// ("hsopsSCH"). Advisory locks are per database.
const lockKey int64 = 0x68736f7073534348

// Lock is a held schema lock.
type Lock struct {
	release func() error
}

// Release gives the lock up. It is safe to call more than once.
func (l *Lock) Release() error {
	if l == nil || l.release == nil {
		return nil
	}
	err := l.release()
	l.release = nil
	return err
}

// holderInfo is what a SQLite lock file says about its holder.
type holderInfo struct {
	Holder string    `json:"holder"`
	PID    int       `json:"pid"`
	Host   string    `json:"host"`
	Since  time.Time `json:"since"`
}

func (h holderInfo) String() string {
	return fmt.Sprintf("%s (pid %d on %s, since %s)", h.Holder, h.PID, h.Host, h.Since.UTC().Format(time.RFC3339))
}

// me describes this process as the holder of a lock.
func me(holder string) holderInfo {
	host, _ := os.Hostname()
	return holderInfo{Holder: holder, PID: os.Getpid(), Host: host, Since: time.Now()}
}

// AcquireLock takes the schema lock without waiting: it returns a
// *LockedError naming the holder when another process has it.
//
// On PostgreSQL it is a session advisory lock held on a dedicated
// connection; the holder is named from pg_stat_activity. On SQLite it is an
// flock on "<database>-hsops.lock", a file next to the database that holds
// the holder's description and is removed on release.
func AcquireLock(ctx context.Context, d *db.DB, holder string) (*Lock, error) {
	if holder == "" {
		holder = "hsops"
	}
	if d.Engine == db.Postgres {
		return lockPostgres(ctx, d, holder)
	}
	return lockSQLite(d.Path, holder)
}

// CheckLock reports, without taking it, whether another process holds the
// schema lock: a *LockedError naming it, or nil. Tools that change a
// database call it before their other refusals, so that another hsops tool
// at work is named as the lock's holder (wait for it) rather than as a
// process to stop.
func CheckLock(ctx context.Context, d *db.DB) error {
	if d.Engine == db.Postgres {
		if holder, held := postgresHolder(ctx, d); held {
			return &LockedError{Holder: holder}
		}
		return nil
	}
	return CheckLockFile(d.Path)
}

// CheckLockFile is CheckLock for a SQLite file at dbPath (which need not
// be open): it tries a shared lock on its lock file, which fails only
// while a holder has it.
func CheckLockFile(dbPath string) error {
	p := LockPath(dbPath)
	f, err := os.Open(p)
	if err != nil {
		return nil
	}
	defer f.Close()
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB)
	if err == nil {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		return nil
	}
	if !errors.Is(err, syscall.EWOULDBLOCK) {
		return nil
	}
	return lockedBy(p)
}

// lockedBy names the holder a lock file describes.
func lockedBy(p string) error {
	data, _ := os.ReadFile(p)
	var h holderInfo
	if json.Unmarshal(data, &h) == nil && h.PID != 0 {
		return &LockedError{Holder: h.String()}
	}
	return &LockedError{Holder: "another process (lock file " + p + ")"}
}

// holderTag marks the description of the holder that the lock's query
// carries, where other sessions read it (pg_stat_activity.query).
const holderTag = "hsops-holder "

// LockPath is the lock file of a SQLite database.
func LockPath(dbPath string) string { return dbPath + "-hsops.lock" }

func lockPostgres(ctx context.Context, d *db.DB, holder string) (*Lock, error) {
	conn, err := d.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("take schema lock: %w", err)
	}
	// The query names its holder in a comment: pg_stat_activity shows the
	// last query of the session holding the lock to whoever looks for it.
	info, _ := json.Marshal(me(holder))
	comment := strings.ReplaceAll(string(info), "*/", "* /")
	var ok bool
	if err := conn.QueryRowContext(ctx, "SELECT pg_try_advisory_lock($1) /* "+holderTag+comment+" */", lockKey).Scan(&ok); err != nil {
		conn.Close()
		return nil, fmt.Errorf("take schema lock: %w", err)
	}
	if !ok {
		conn.Close()
		name, _ := postgresHolder(ctx, d)
		return nil, &LockedError{Holder: name}
	}
	return &Lock{release: func() error {
		defer conn.Close()
		_, err := conn.ExecContext(context.Background(), "SELECT pg_advisory_unlock($1)", lockKey)
		return err
	}}, nil
}

// postgresHolder describes the session holding the advisory lock; held is
// false when no session holds it.
func postgresHolder(ctx context.Context, q db.Querier) (name string, held bool) {
	var (
		pid     int
		app     sql.NullString
		addr    sql.NullString
		query   sql.NullString
		started time.Time
	)
	err := q.QueryRowContext(ctx, `
		SELECT a.pid, a.application_name, host(a.client_addr), a.query, coalesce(a.query_start, a.backend_start)
		FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
		WHERE l.locktype = 'advisory' AND l.granted AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
		  AND l.classid = $1 AND l.objid = $2 AND l.objsubid = 1 AND a.pid <> pg_backend_pid()
		LIMIT 1`, uint32(lockKey>>32), uint32(lockKey&0xffffffff)).Scan(&pid, &app, &addr, &query, &started)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false
	}
	if err != nil {
		return "another session", true
	}
	if i := strings.Index(query.String, holderTag); i >= 0 {
		text := query.String[i+len(holderTag):]
		if j := strings.LastIndex(text, "*/"); j >= 0 {
			text = text[:j]
		}
		var h holderInfo
		if json.Unmarshal([]byte(strings.TrimSpace(text)), &h) == nil && h.PID != 0 {
			return h.String(), true
		}
	}
	who := app.String
	if who == "" {
		who = "a session"
	}
	where := addr.String
	if where == "" {
		where = "local socket"
	}
	return fmt.Sprintf("%s (server pid %d, from %s, since %s)", who, pid, where, started.UTC().Format(time.RFC3339)), true
}

func lockSQLite(dbPath, holder string) (*Lock, error) {
	p := LockPath(dbPath)
	for attempt := 0; attempt < 10; attempt++ {
		f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o644)
		if errors.Is(err, os.ErrPermission) {
			return nil, fault.Wrap(fault.Permission, fmt.Errorf("take schema lock: %w", err),
				"nothing was changed: the lock file is written next to the database: run it as the homeserver's user")
		}
		if err != nil {
			return nil, fmt.Errorf("take schema lock %q: %w", p, err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			defer f.Close()
			if errors.Is(err, syscall.EWOULDBLOCK) {
				return nil, lockedBy(p)
			}
			return nil, fmt.Errorf("take schema lock %q: %w", p, err)
		}
		// The holder before us may have removed the file after we opened it:
		// then we locked an orphan and must start again.
		fst, err1 := f.Stat()
		pst, err2 := os.Stat(p)
		if err1 != nil || err2 != nil || !os.SameFile(fst, pst) {
			f.Close()
			continue
		}
		info, _ := json.Marshal(me(holder))
		if err := f.Truncate(0); err == nil {
			_, _ = f.WriteAt(append(info, '\n'), 0)
		}
		return &Lock{release: func() error {
			err := os.Remove(p)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if errors.Is(err, os.ErrNotExist) {
				err = nil
			}
			return err
		}}, nil
	}
	return nil, fmt.Errorf("take schema lock %q: the lock file keeps changing", p)
}
