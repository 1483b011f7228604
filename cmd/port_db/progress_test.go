package main

import (
	"io"
	"testing"
	"time"

	"hsops/internal/porter"
)

// TestSpeed_NoAbsurdFirstRate: the first batches of a copy land within
// milliseconds, and a rate over them was millions of rows/s; the rates are
// shown once the copy has run long enough to mean something, and at its end.
func TestSpeed_NoAbsurdFirstRate(t *testing.T) {
	for _, tc := range []struct {
		name              string
		rows, left, bytes int64
		elapsed           time.Duration
		final             bool
		want              string
	}{
		{"first batch after 10 ms", 10000, 90000, 5e6, 10 * time.Millisecond, false, "rate: measuring"},
		{"bytes before rows", 0, 100000, 5e6, 3 * time.Second, false, "rate: measuring"},
		{"after the window", 10000, 20000, 4e6, 4 * time.Second, false, "2500 rows/s  1.0 MB/s  ETA 8s"},
		{"a copy over in half a second", 5000, 0, 1e6, 500 * time.Millisecond, true, "10000 rows/s  2.0 MB/s  ETA 0s"},
	} {
		if got := speed(tc.rows, tc.left, tc.bytes, tc.elapsed, tc.final); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestCommitted_WithJSON: with --json the progress is printed as events,
// and an interruption still says what the copy kept.
func TestCommitted_WithJSON(t *testing.T) {
	p := newProgress(&options{json: true, stdout: io.Discard, stderr: io.Discard})
	if got := p.committed(); got != "no table was copied yet" {
		t.Errorf("before the copy: %q", got)
	}
	for _, ev := range []porter.Event{
		{Type: "plan", Done: 0, Total: 300},
		{Type: "pending", Table: "events", Total: 200},
		{Type: "pending", Table: "users", Total: 100},
		{Type: "table", Table: "users", Total: 100},
		{Type: "table_done", Table: "users", Done: 100, Total: 100},
		{Type: "table", Table: "events", Total: 200},
		{Type: "batch", Table: "events", Done: 50, Total: 200},
	} {
		p.event(ev)
	}
	if got, want := p.committed(), "1 of 2 tables copied by this run; the one being copied keeps its committed batches"; got != want {
		t.Errorf("during the copy: %q, want %q", got, want)
	}
}
