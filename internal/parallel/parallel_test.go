package parallel

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
)

func TestFor_RunsEveryStepOnAtMostJobs(t *testing.T) {
	const n, jobs = 50, 3
	var (
		mu            sync.Mutex
		running, most int
		ran           [n]atomic.Bool
	)
	err := For(context.Background(), jobs, n, func(_ context.Context, i int) error {
		mu.Lock()
		running++
		most = max(most, running)
		mu.Unlock()
		ran[i].Store(true)
		mu.Lock()
		running--
		mu.Unlock()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := range ran {
		if !ran[i].Load() {
			t.Errorf("step %d did not run", i)
		}
	}
	if most > jobs {
		t.Errorf("%d steps ran at once, want at most %d", most, jobs)
	}
}

func TestFor_FirstErrorStopsTheRest(t *testing.T) {
	boom := errors.New("boom")
	var started atomic.Int64
	err := For(context.Background(), 1, 10, func(ctx context.Context, i int) error {
		started.Add(1)
		if i == 2 {
			return boom
		}
		return nil
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want boom", err)
	}
	if got := started.Load(); got != 3 {
		t.Errorf("%d steps started, want 3 (none after the failure)", got)
	}
}

func TestFor_FailureCancelsTheOthers(t *testing.T) {
	boom := errors.New("boom")
	err := For(context.Background(), 2, 2, func(ctx context.Context, i int) error {
		if i == 0 {
			return boom
		}
		<-ctx.Done() // returns only because the failure cancelled it
		return ctx.Err()
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want the first error, boom", err)
	}
}

func TestFor_CancelledContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var ran atomic.Int64
	err := For(ctx, 4, 10, func(context.Context, int) error { ran.Add(1); return nil })
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if ran.Load() != 0 {
		t.Errorf("%d steps ran after the context ended", ran.Load())
	}
}

func TestFor_NoSteps(t *testing.T) {
	if err := For(context.Background(), 0, 0, func(context.Context, int) error { t.Fatal("ran"); return nil }); err != nil {
		t.Fatal(err)
	}
}
