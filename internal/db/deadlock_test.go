package db_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"hsops/internal/db"
)

func TestRetryDeadlocks(t *testing.T) {
	deadlock := fmt.Errorf("rebuild: %w", &pgconn.PgError{Code: "40P01", Message: "deadlock detected"})
	other := &pgconn.PgError{Code: "23505", Message: "duplicate key"}
	for _, c := range []struct {
		name     string
		errs     []error // what each attempt returns; nil after the list
		attempts int
		want     error
	}{
		{"succeeds at once", nil, 1, nil},
		{"a deadlock is run again", []error{deadlock, deadlock}, 3, nil},
		{"another error is not", []error{other}, 1, other},
		{"five deadlocks are the end", []error{deadlock, deadlock, deadlock, deadlock, deadlock, deadlock}, 5, deadlock},
	} {
		t.Run(c.name, func(t *testing.T) {
			attempts := 0
			err := db.RetryDeadlocks(context.Background(), func() error {
				attempts++
				if attempts <= len(c.errs) {
					return c.errs[attempts-1]
				}
				return nil
			})
			if !errors.Is(err, c.want) || (c.want == nil) != (err == nil) {
				t.Errorf("err = %v, want %v", err, c.want)
			}
			if attempts != c.attempts {
				t.Errorf("%d attempts, want %d", attempts, c.attempts)
			}
		})
	}
}

func TestRetryDeadlocks_StopsWhenCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	attempts := 0
	err := db.RetryDeadlocks(ctx, func() error {
		attempts++
		cancel()
		return &pgconn.PgError{Code: "40P01"}
	})
	if !errors.Is(err, context.Canceled) || attempts != 1 {
		t.Errorf("err = %v after %d attempts, want context.Canceled after 1", err, attempts)
	}
}
