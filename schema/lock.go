package schema

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"hsops/internal/db"
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
		return lockPostgres(ctx, d)
	}
	return lockSQLite(d.Path, holder)
}

// LockPath is the lock file of a SQLite database.
func LockPath(dbPath string) string { return dbPath + "-hsops.lock" }

func lockPostgres(ctx context.Context, d *db.DB) (*Lock, error) {
	conn, err := d.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("take schema lock: %w", err)
	}
	var ok bool
	if err := conn.QueryRowContext(ctx, "SELECT pg_try_advisory_lock($1)", lockKey).Scan(&ok); err != nil {
		conn.Close()
		return nil, fmt.Errorf("take schema lock: %w", err)
	}
	if !ok {
		holder := postgresHolder(ctx, conn)
		conn.Close()
		return nil, &LockedError{Holder: holder}
	}
	return &Lock{release: func() error {
		defer conn.Close()
		_, err := conn.ExecContext(context.Background(), "SELECT pg_advisory_unlock($1)", lockKey)
		return err
	}}, nil
}

// postgresHolder describes the session holding the advisory lock.
func postgresHolder(ctx context.Context, conn *sql.Conn) string {
	var (
		pid     int
		app     sql.NullString
		addr    sql.NullString
		started time.Time
	)
	err := conn.QueryRowContext(ctx, `
		SELECT a.pid, a.application_name, host(a.client_addr), a.backend_start
		FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
		WHERE l.locktype = 'advisory' AND l.granted AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
		  AND l.classid = $1 AND l.objid = $2 AND l.objsubid = 1
		LIMIT 1`, uint32(lockKey>>32), uint32(lockKey&0xffffffff)).Scan(&pid, &app, &addr, &started)
	if err != nil {
		return "another session"
	}
	name := app.String
	if name == "" {
		name = "a session"
	}
	where := addr.String
	if where == "" {
		where = "local socket"
	}
	return fmt.Sprintf("%s (server pid %d, from %s, connected since %s)", name, pid, where, started.UTC().Format(time.RFC3339))
}

func lockSQLite(dbPath, holder string) (*Lock, error) {
	p := LockPath(dbPath)
	for attempt := 0; attempt < 10; attempt++ {
		f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			return nil, fmt.Errorf("take schema lock %q: %w", p, err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			defer f.Close()
			if errors.Is(err, syscall.EWOULDBLOCK) {
				data, _ := os.ReadFile(p)
				var h holderInfo
				if json.Unmarshal(data, &h) == nil && h.PID != 0 {
					return nil, &LockedError{Holder: h.String()}
				}
				return nil, &LockedError{Holder: "another process (lock file " + p + ")"}
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
		host, _ := os.Hostname()
		info, _ := json.Marshal(holderInfo{Holder: holder, PID: os.Getpid(), Host: host, Since: time.Now()})
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
