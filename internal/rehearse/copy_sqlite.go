package rehearse

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"modernc.org/sqlite"

	"hsops/internal/db"
)

// pagesPerStep is how much of a SQLite database one backup step copies
// (with 4 KiB pages, 16 MiB): small enough for progress, large enough that
// steps cost nothing.
var pagesPerStep int32 = 4096

// unlockedAttempts is how many times a copy of a rollback-journal database
// is restarted by the homeserver's writes before it is finished under a
// read lock (which makes those writes wait).
const unlockedAttempts = 3

// openSourceSQLite opens a SQLite database strictly read-only: mode=ro
// never checkpoints a WAL nor writes anything, whoever else has the file
// open.
func openSourceSQLite(ctx context.Context, path string) (*sql.DB, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("%w: %q", db.ErrNotFound, path)
	}
	q := url.Values{}
	q.Set("mode", "ro")
	q.Add("_pragma", "busy_timeout(10000)")
	dsn := "file:" + escapeURI(path) + "?" + q.Encode()
	sdb, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, err
	}
	sdb.SetMaxOpenConns(1)
	if err := sdb.PingContext(ctx); err != nil {
		sdb.Close()
		return nil, fmt.Errorf("%w: %q: %v", db.ErrNotDatabase, path, err)
	}
	return sdb, nil
}

// escapeURI makes a file path safe inside a file: URI.
func escapeURI(p string) string {
	return strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(p)
}

func syncFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// sqliteSize is a database's size on disk: the file and its WAL.
func sqliteSize(path string) int64 {
	var n int64
	for _, p := range []string{path, path + "-wal"} {
		if st, err := os.Stat(p); err == nil {
			n += st.Size()
		}
	}
	return n
}

// backupSQLite copies a live SQLite database to dst with SQLite's online
// backup API. The copy is one consistent snapshot:
//
//   - in WAL mode the copy runs inside one read transaction: it sees one
//     snapshot (the WAL's committed frames included) and the homeserver
//     keeps writing meanwhile;
//   - in rollback-journal mode a read transaction would make every write
//     wait, so the copy first runs without one; a write by another process
//     restarts it (SQLite's rule), and after a few restarts it is finished
//     under a read lock, the writers waiting for that last pass (reported).
func backupSQLite(ctx context.Context, src, dst string, progress func(done, total int64)) (Copy, error) {
	t0 := time.Now()
	c := Copy{Method: "backup", Scratch: dst}
	sdb, err := openSourceSQLite(ctx, src)
	if err != nil {
		return c, err
	}
	defer sdb.Close()
	conn, err := sdb.Conn(ctx)
	if err != nil {
		return c, err
	}
	defer conn.Close()
	var mode string
	if err := conn.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return c, fmt.Errorf("read the journal mode of %q: %w", src, err)
	}
	wal := strings.EqualFold(mode, "wal")
	var pageSize int64
	if err := conn.QueryRowContext(ctx, "PRAGMA page_size").Scan(&pageSize); err != nil {
		return c, err
	}
	inTx := false
	lock := func() error {
		if _, err := conn.ExecContext(ctx, "BEGIN"); err != nil {
			return err
		}
		// A read transaction starts at its first read.
		var n int
		if err := conn.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_master").Scan(&n); err != nil {
			return err
		}
		inTx = true
		return nil
	}
	defer func() {
		if inTx {
			_, _ = conn.ExecContext(context.WithoutCancel(ctx), "ROLLBACK")
		}
	}()
	if wal {
		if err := lock(); err != nil {
			return c, fmt.Errorf("start the snapshot of %q: %w", src, err)
		}
	}
	var lockedAt time.Time
	err = conn.Raw(func(dc any) error {
		bk, ok := dc.(interface {
			NewBackup(string) (*sqlite.Backup, error)
		})
		if !ok {
			return fmt.Errorf("the SQLite driver has no backup API")
		}
		// The copy is scratch: no journal and no syncs while it is written
		// (a killed copy is discarded whole); it is synced once at the end.
		b, err := bk.NewBackup("file:" + escapeURI(dst) + "?_pragma=journal_mode(off)&_pragma=synchronous(off)")
		if err != nil {
			return fmt.Errorf("%w: create %q: %v", ErrScratch, dst, err)
		}
		restarts := 0
		lastRemaining := -1
		for {
			if err := ctx.Err(); err != nil {
				_ = b.Finish()
				return err
			}
			more, err := b.Step(pagesPerStep)
			if err != nil {
				_ = b.Finish()
				return fmt.Errorf("copy %q: %w", src, err)
			}
			total, remaining := b.PageCount(), b.Remaining()
			if !more {
				remaining = 0
			}
			if progress != nil {
				progress(int64(total-remaining)*pageSize, int64(total)*pageSize)
			}
			if !more {
				break
			}
			if !wal && !inTx && lastRemaining >= 0 && remaining > lastRemaining {
				// Another process wrote: SQLite restarted the copy.
				restarts++
				if restarts >= unlockedAttempts {
					if err := lockRaw(ctx, dc); err != nil {
						_ = b.Finish()
						return fmt.Errorf("lock %q for the copy: %w", src, err)
					}
					inTx = true
					lockedAt = time.Now()
				}
			}
			lastRemaining = remaining
		}
		return b.Finish()
	})
	if err != nil {
		return c, err
	}
	if !lockedAt.IsZero() {
		c.WritersWaitedMillis = time.Since(lockedAt).Milliseconds()
	}
	if err := syncFile(dst); err != nil {
		return c, fmt.Errorf("%w: %v", ErrScratch, err)
	}
	c.Bytes = sqliteSize(dst)
	c.Millis = time.Since(t0).Milliseconds()
	return c, nil
}

// lockRaw starts a read transaction on a driver connection (inside Raw,
// where database/sql cannot be used).
func lockRaw(ctx context.Context, dc any) error {
	ex, ok1 := dc.(driver.ExecerContext)
	qc, ok2 := dc.(driver.QueryerContext)
	if !ok1 || !ok2 {
		return fmt.Errorf("the SQLite driver cannot run statements here")
	}
	if _, err := ex.ExecContext(ctx, "BEGIN", nil); err != nil {
		return err
	}
	rows, err := qc.QueryContext(ctx, "SELECT count(*) FROM sqlite_master", nil)
	if err != nil {
		return err
	}
	dest := make([]driver.Value, 1)
	err = rows.Next(dest)
	rows.Close()
	return err
}
