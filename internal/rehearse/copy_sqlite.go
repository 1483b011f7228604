package rehearse

import (
	"context"
	"errors"

	"hsops/internal/fault"
	"hsops/internal/sqlitecopy"
)

// backupSQLite makes the scratch copy of a live SQLite database
// (sqlitecopy.Backup: one consistent snapshot, the homeserver kept waiting
// as little as the journal mode allows), reported as rehearse reports its
// copies.
func backupSQLite(ctx context.Context, src, dst string, progress func(done, total int64)) (Copy, error) {
	cp, err := sqlitecopy.Backup(ctx, src, dst, progress)
	c := Copy{Method: cp.Method, Scratch: dst, Bytes: cp.Bytes, Millis: cp.Millis, WritersWaitedMillis: cp.WritersWaitedMillis}
	if errors.Is(err, sqlitecopy.ErrScratch) {
		err = fault.Wrap(fault.Backup, err, ErrScratch.Hint())
	}
	return c, err
}
