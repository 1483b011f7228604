// Package sqlitecopy makes a consistent copy of a live SQLite database (the
// homeserver's, while it serves): the online backup API in WAL mode; in
// rollback-journal mode a plain copy under the read lock when nobody else
// has the file open, else the backup API, restarted by the homeserver's
// writes, then the copy under the read lock. Pages are copied as they are,
// so rowids are the source's (a VACUUM INTO would renumber them, which a
// resumable port cannot allow). Used by rehearse (its scratch copy) and by
// port_db --switch-config (its pre-copy).
package sqlitecopy

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"

	"modernc.org/sqlite"

	"hsops/internal/db"
	"hsops/internal/fault"
	"hsops/internal/proc"
)

// ErrScratch is a copy that could not be written.
var ErrScratch = fault.New(fault.Backup, "cannot make the copy of the SQLite database",
	"nothing was changed: make room where the copy is written")

// Copy is what Backup did.
type Copy struct {
	// Method is "backup" (SQLite's online backup API) or "locked" (a file in
	// rollback-journal mode copied under its read lock).
	Method string `json:"method"`
	// Path is the copy.
	Path   string `json:"path"`
	Bytes  int64  `json:"bytes"`
	Millis int64  `json:"ms"`
	// WritersWaitedMillis is how long the homeserver's writes had to wait
	// (a database in rollback-journal mode that kept being written, copied
	// under its read lock in the end); 0 otherwise.
	WritersWaitedMillis int64 `json:"writers_waited_ms,omitempty"`
}

// pagesPerStep is how much of a SQLite database one backup step copies
// (with 4 KiB pages, 16 MiB): small enough for progress, large enough that
// steps cost nothing.
var pagesPerStep int32 = 4096

// unlockedAttempts is how many times the backup of a rollback-journal
// database another process has open may be restarted by its writes before
// the file is copied under a read lock (which makes those writes wait).
const unlockedAttempts = 3

// OpenReadOnly opens a SQLite database strictly read-only: mode=ro
// never checkpoints a WAL nor writes anything, whoever else has the file
// open.
func OpenReadOnly(ctx context.Context, path string) (*sql.DB, error) {
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

// Size is a database's size on disk: the file and its WAL.
func Size(path string) int64 {
	var n int64
	for _, p := range []string{path, path + "-wal"} {
		if st, err := os.Stat(p); err == nil {
			n += st.Size()
		}
	}
	return n
}

// Backup copies a live SQLite database to dst. The copy is one
// consistent snapshot, and the homeserver is kept waiting as little as the
// journal mode allows:
//
//   - in WAL mode, SQLite's online backup API inside one read transaction:
//     it sees one snapshot (the WAL's committed frames included) and the
//     homeserver keeps writing meanwhile;
//   - in rollback-journal mode, a read transaction makes every writer wait
//     (a writer needs the file to itself to commit), but while it is held the
//     file does not change, so the file is copied as it is, at the speed of a
//     plain copy. When no other process has the file open, that is what is
//     done. Otherwise the backup API runs first without a read transaction,
//     restarted by SQLite whenever another process writes; after a few
//     restarts the file is copied under the read lock, the homeserver's
//     writes waiting for that copy (reported).
func Backup(ctx context.Context, src, dst string, progress func(done, total int64)) (Copy, error) {
	t0 := time.Now()
	c := Copy{Method: "backup", Path: dst}
	s, err := openSource(ctx, src)
	if err != nil {
		return c, err
	}
	defer s.close(ctx)
	if err := s.copyTo(ctx, dst, progress, &c); err != nil {
		return c, err
	}
	if err := syncFile(dst); err != nil {
		return c, fmt.Errorf("%w: %v", ErrScratch, err)
	}
	c.Bytes = Size(dst)
	c.Millis = time.Since(t0).Milliseconds()
	return c, nil
}

// source is the live database Backup copies, read on one read-only
// connection.
type source struct {
	path     string
	sdb      *sql.DB
	conn     *sql.Conn
	wal      bool
	pageSize int64
	// inTx: the connection holds a read transaction (the read lock).
	inTx bool
}

// openSource opens the database and reads its journal mode and page size.
func openSource(ctx context.Context, path string) (*source, error) {
	sdb, err := OpenReadOnly(ctx, path)
	if err != nil {
		return nil, err
	}
	s := &source{path: path, sdb: sdb}
	if s.conn, err = sdb.Conn(ctx); err != nil {
		sdb.Close()
		return nil, err
	}
	var mode string
	if err := s.conn.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		s.close(ctx)
		return nil, fmt.Errorf("read the journal mode of %q: %w", path, err)
	}
	s.wal = strings.EqualFold(mode, "wal")
	if err := s.conn.QueryRowContext(ctx, "PRAGMA page_size").Scan(&s.pageSize); err != nil {
		s.close(ctx)
		return nil, fmt.Errorf("read the page size of %q: %w", path, err)
	}
	return s, nil
}

// close ends the read transaction, if any, and closes the database.
func (s *source) close(ctx context.Context) {
	if s.inTx {
		_, _ = s.conn.ExecContext(context.WithoutCancel(ctx), "ROLLBACK")
	}
	s.conn.Close()
	s.sdb.Close()
}

// lock starts a read transaction: in WAL mode, one snapshot; in
// rollback-journal mode, the read lock that makes every writer wait.
func (s *source) lock(ctx context.Context) error {
	if _, err := s.conn.ExecContext(ctx, "BEGIN"); err != nil {
		return err
	}
	// A read transaction starts at its first read.
	var n int
	if err := s.conn.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_master").Scan(&n); err != nil {
		return err
	}
	s.inTx = true
	return nil
}

// copyTo copies the database to dst as the journal mode allows (see
// Backup), and records how in c.
func (s *source) copyTo(ctx context.Context, dst string, progress func(done, total int64), c *Copy) error {
	switch {
	case s.wal:
		if err := s.lock(ctx); err != nil {
			return fmt.Errorf("start the snapshot of %q: %w", s.path, err)
		}
		_, err := backupAPI(ctx, s.conn, s.path, dst, s.pageSize, progress, 0)
		return err
	case !proc.HomeserverRunning(proc.Target{SQLite: []string{s.path}}).Running():
		return s.lockedCopy(ctx, dst, progress, c)
	}
	done, err := backupAPI(ctx, s.conn, s.path, dst, s.pageSize, progress, unlockedAttempts)
	if err != nil || done {
		return err
	}
	lockedAt := time.Now()
	if err := s.lockedCopy(ctx, dst, progress, c); err != nil {
		return err
	}
	c.WritersWaitedMillis = time.Since(lockedAt).Milliseconds()
	return nil
}

// lockedCopy copies the file as it is under the read lock.
func (s *source) lockedCopy(ctx context.Context, dst string, progress func(done, total int64), c *Copy) error {
	if !s.inTx {
		if err := s.lock(ctx); err != nil {
			return fmt.Errorf("lock %q for the copy: %w", s.path, err)
		}
	}
	c.Method = "locked"
	return copyFileProgress(ctx, s.path, dst, progress)
}

// backupAPI copies with SQLite's online backup API. With restarts > 0 it
// gives up (done false, dst removed) once another process's writes have
// restarted it that many times.
func backupAPI(ctx context.Context, conn *sql.Conn, src, dst string, pageSize int64, progress func(done, total int64), restarts int) (done bool, err error) {
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
		seen := 0
		lastRemaining := -1
		for {
			if err := ctx.Err(); err != nil {
				_ = b.Finish()
				return err
			}
			more, err := b.Step(pagesPerStep)
			if err != nil && isBusy(err) {
				// A writer of another process holds the file (the backup
				// does not wait for its read lock as a query does): it
				// counts as a restart, and the step is tried again.
				if restarts > 0 {
					if seen++; seen >= restarts {
						return b.Finish()
					}
				}
				select {
				case <-ctx.Done():
				case <-time.After(10 * time.Millisecond):
				}
				continue
			}
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
				done = true
				return b.Finish()
			}
			if restarts > 0 && lastRemaining >= 0 && remaining > lastRemaining {
				// Another process wrote: SQLite restarted the copy.
				if seen++; seen >= restarts {
					return b.Finish()
				}
			}
			lastRemaining = remaining
		}
	})
	if err == nil && !done {
		err = os.Remove(dst)
	}
	return done, err
}

// isBusy reports whether err is SQLite's SQLITE_BUSY or SQLITE_LOCKED
// (primary codes 5 and 6).
func isBusy(err error) bool {
	var se interface{ Code() int }
	if !errors.As(err, &se) {
		return false
	}
	c := se.Code() & 0xff
	return c == 5 || c == 6
}

// copyFileProgress copies a file (in the kernel where it can), in chunks
// that report progress, and cancellable between them.
func copyFileProgress(ctx context.Context, src, dst string, progress func(done, total int64)) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("copy %q: %w", src, err)
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("%w: create %q: %v", ErrScratch, dst, err)
	}
	defer out.Close()
	var done int64
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := io.CopyN(out, in, 64<<20)
		done += n
		if progress != nil {
			progress(done, max(st.Size(), done))
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("%w: copy %q: %v", ErrScratch, src, err)
		}
	}
	return out.Close()
}
