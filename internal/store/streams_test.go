package store

import (
	"context"
	"database/sql"
	"errors"
	"testing"

	"hsops/internal/db"
	"hsops/internal/dbtest"
	"hsops/internal/notifier"
	"hsops/internal/pgtest"
	"hsops/schema"
	"hsops/schema/engine"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func newStore(t *testing.T, e db.Engine) *Store {
	t.Helper()
	d := dbtest.New(t, e).Open(t)
	if _, err := engine.Schema().Apply(context.Background(), d, schema.Options{ServerName: "example.org"}); err != nil {
		t.Fatal(err)
	}
	s := New(d, "example.org", "master")
	if err := s.InitStreams(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestPosition_NeverPassesAnOpenTransaction: on PostgreSQL two writers can
// commit their stream ids out of order; the position (and so a next_batch)
// stays below an id still in an open transaction, and a rolled-back id
// does not move it.
func TestPosition_NeverPassesAnOpenTransaction(t *testing.T) {
	s := newStore(t, db.Postgres)
	ctx := context.Background()
	pos := func() int64 {
		t.Helper()
		p, err := s.Position(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return p.Events
	}
	start := pos()
	held := make(chan int64)
	release := make(chan error)
	done := make(chan error)
	go func() {
		done <- s.Tx(ctx, func(tx *sql.Tx) error {
			id, err := s.nextID(ctx, tx, streamEvents)
			if err != nil {
				return err
			}
			held <- id
			return <-release
		})
	}()
	first := <-held
	var second int64
	if err := s.Tx(ctx, func(tx *sql.Tx) (err error) {
		second, err = s.nextID(ctx, tx, streamEvents)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if second <= first {
		t.Fatalf("ids %d then %d", first, second)
	}
	if got := pos(); got != first-1 || got < start {
		t.Errorf("position %d with %d open and %d committed, want %d", got, first, second, first-1)
	}
	release <- nil
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := pos(); got != second {
		t.Errorf("position %d once both committed, want %d", got, second)
	}
	// A rolled-back id leaves the position where it was.
	refused := errors.New("refused")
	if err := s.Tx(ctx, func(tx *sql.Tx) error {
		if _, err := s.nextID(ctx, tx, streamEvents); err != nil {
			return err
		}
		return refused
	}); !errors.Is(err, refused) {
		t.Fatal(err)
	}
	if got := pos(); got != second {
		t.Errorf("position %d after a rollback, want %d", got, second)
	}
}

// TestTx_WakesOnlyOnCommit: the listeners a transaction names are woken
// when it commits, never when it rolls back.
func TestTx_WakesOnlyOnCommit(t *testing.T) {
	dbtest.Engines(t, func(t *testing.T, e db.Engine) {
		s := newStore(t, e)
		ctx := context.Background()
		l := s.Notifier.Listen(notifier.RoomKey("!r:example.org"))
		defer l.Close()
		_ = s.Tx(ctx, func(tx *sql.Tx) error {
			s.wakeAfter(tx, notifier.RoomKey("!r:example.org"))
			return errors.New("refused")
		})
		select {
		case <-l.C:
			t.Fatal("woken by a rolled-back transaction")
		default:
		}
		if err := s.Tx(ctx, func(tx *sql.Tx) error {
			s.wakeAfter(tx, notifier.RoomKey("!r:example.org"))
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		select {
		case <-l.C:
		default:
			t.Fatal("not woken by a commit")
		}
	})
}

func TestSyncToken_RoundTrip(t *testing.T) {
	tok := SyncToken{Events: 42, Typing: 1700000000000, Receipts: 7, AccountData: 9}
	got, err := ParseSyncToken(tok.String())
	if err != nil || got != tok {
		t.Fatalf("%s read back as %+v, %v", tok, got, err)
	}
	// Synapse's own tokens read too; a /messages token is a position in
	// the events stream only.
	if got, err := ParseSyncToken("s72594_4483_1934_12_19_0_0_0_0_0"); err != nil || got != (SyncToken{Events: 72594, Typing: 1934, Receipts: 12, AccountData: 19}) {
		t.Errorf("a Synapse token: %+v, %v", got, err)
	}
	for _, bad := range []string{"", "t1-2", "sx_1", "s-1"} {
		if _, err := ParseSyncToken(bad); !errors.Is(err, ErrBadToken) {
			t.Errorf("%q: %v, want ErrBadToken", bad, err)
		}
	}
}
