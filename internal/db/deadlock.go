package db

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// deadlockAttempts is how many times RetryDeadlocks runs a step.
const deadlockAttempts = 5

// RetryDeadlocks runs step, a transaction or a statement that keeps
// nothing when it fails, and runs it again when PostgreSQL broke a deadlock
// by aborting it (SQLSTATE 40P01): up to 5 attempts, 50 ms times the
// attempt's number apart, so that the session it deadlocked with can
// finish. Steps on related tables take their locks in different orders
// (two foreign keys added side by side lock both of their tables), so a
// deadlock is expected and is no failure. Any other error, or the last
// attempt's, is returned.
func RetryDeadlocks(ctx context.Context, step func() error) error {
	for attempt := 1; ; attempt++ {
		err := step()
		if err == nil || attempt == deadlockAttempts || !IsDeadlock(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(attempt*50) * time.Millisecond):
		}
	}
}

// IsDeadlock reports whether err is PostgreSQL's deadlock_detected.
func IsDeadlock(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "40P01"
}
