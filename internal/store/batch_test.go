package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"testing"

	"hsops/internal/db"
	"hsops/internal/dbtest"
	"hsops/schema"
	"hsops/schema/engine"
)

// newDB is a fresh database at a schema version (0: the newest).
func newDB(t *testing.T, e db.Engine, version int) *db.DB {
	t.Helper()
	d := dbtest.New(t, e).Open(t)
	if _, err := engine.Schema().Apply(context.Background(), d, schema.Options{Target: version, ServerName: "example.org"}); err != nil {
		t.Fatal(err)
	}
	return d
}

func inTx(t *testing.T, d *db.DB, fn func(tx *sql.Tx) error) {
	t.Helper()
	tx, err := d.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

// TestAdded_MatchesTheSchema upgrades one database version by version
// from the oldest the store writes to the newest, on both engines, and at
// each version checks that the columns a batch writes are exactly those of
// the store's tables that the schema has, then writes a batch of every
// kind of row there (the next versions upgrade those rows).
func TestAdded_MatchesTheSchema(t *testing.T) {
	dbtest.Engines(t, func(t *testing.T, e db.Engine) {
		ctx := context.Background()
		d := dbtest.New(t, e).Open(t)
		s := New(d, "example.org", "master")
		newest := engine.Schema().Version
		for v := OldestVersion; v <= newest; v++ {
			if _, err := engine.Schema().Apply(ctx, d, schema.Options{Target: v, ServerName: "example.org"}); err != nil {
				t.Fatalf("apply %d: %v", v, err)
			}
			for _, p := range plansFor(e, v) {
				exists, err := d.TableExists(ctx, d, p.spec.name)
				if err != nil {
					t.Fatal(err)
				}
				if exists == p.skip {
					t.Errorf("schema %d: table %s exists: %v, but the store writes it: %v", v, p.spec.name, exists, !p.skip)
					continue
				}
				if !exists {
					continue
				}
				have, err := d.Columns(ctx, d, p.spec.name)
				if err != nil {
					t.Fatal(err)
				}
				var want []string
				for _, c := range p.spec.cols {
					for _, h := range have {
						if h == c.name {
							want = append(want, c.name)
						}
					}
				}
				if got := p.columns(); strings.Join(got, ",") != strings.Join(want, ",") {
					t.Errorf("schema %d: the store writes %s (%s), the table has (%s) of them", v, p.spec.name, strings.Join(got, ", "), strings.Join(want, ", "))
				}
			}
			b, err := s.NewBatch(v)
			if err != nil {
				t.Fatal(err)
			}
			everyRow(t, b, fmt.Sprint(v), int64(v-OldestVersion)*100)
			if v == newest {
				b.AddStreamPosition("events", 1)
			}
			inTx(t, d, func(tx *sql.Tx) error {
				_, err := b.Flush(ctx, tx)
				return err
			})
		}
	})
}

// everyRow adds to b a room with rows of every table the store writes
// (see aroundRoom and roomEvents). IDs end in tag; stream orderings, state
// groups and token IDs start after base.
func everyRow(t *testing.T, b *Batch, tag string, base int64) {
	t.Helper()
	events := roomEvents(tag, base)
	aroundRoom(b, tag, base, events)
	for _, e := range events {
		if err := b.Add(e); err != nil {
			t.Fatal(err)
		}
	}
}

// aroundRoom adds the rows around a room's events: its creator's account,
// filter and account data, the room, its depth and a receipt.
func aroundRoom(b *Batch, tag string, base int64, events []*Event) {
	user := "@u" + tag + ":example.org"
	room := "!r" + tag + ":example.org"
	b.AddAccount(Account{UserID: user, PasswordHash: "h", CreationTS: 1, DisplayName: "U", DeviceID: "D" + tag, DeviceName: "phone",
		LastSeen: 2, TokenID: base + 1, Token: "t" + tag})
	b.AddFilter(user, 0, []byte("{}"))
	b.AddAccountData(user, "m.push_rules", base+1, "{}")
	b.AddRoom(room, user, true)
	b.AddRoomDepth(room, 1)
	b.AddReceipt(Receipt{StreamID: base + 1, RoomID: room, Type: "m.read", UserID: user, EventID: events[0].EventID, Data: "{}"})
}

// roomEvents are the events of a room, resolved as Persist resolves them:
// state events (one replaced), messages, a thread reply, a reaction, a
// redaction, a client transaction, a leave and a backfilled event.
func roomEvents(tag string, base int64) []*Event {
	user := "@u" + tag + ":example.org"
	room := "!r" + tag + ":example.org"
	var events []*Event
	var group, groups, depth int64
	last := ""
	add := func(typ string, key *string, content map[string]any, backfilled bool) *Event {
		n := int64(len(events) + 1)
		e := &Event{EventID: fmt.Sprintf("$e%d-%s", n, tag), RoomID: room, Type: typ, Sender: user, StateKey: key, Content: content,
			OriginServerTS: 1000 + n, StreamOrdering: base + n, Backfilled: backfilled, StateGroup: group, Depth: depth + 1}
		if len(events) > 0 {
			e.AuthEvents = []string{events[0].EventID}
		}
		if backfilled {
			e.StreamOrdering = -(base + 1)
		} else {
			depth++
			if last != "" {
				e.PrevEvents = []string{last}
			}
			last = e.EventID
			if key != nil {
				groups++
				e.PrevStateGroup, e.StateGroup = group, base+groups
				group = e.StateGroup
			}
		}
		events = append(events, e)
		return e
	}
	add("m.room.create", Str(""), map[string]any{"creator": user, "room_version": "10"}, false)
	add("m.room.member", Str(user), map[string]any{"membership": "join", "displayname": "U"}, false)
	add("m.room.name", Str(""), map[string]any{"name": "first"}, false)
	add("m.room.name", Str(""), map[string]any{"name": "second"}, false)
	root := add("m.room.message", nil, map[string]any{"msgtype": "m.text", "body": "hello world"}, false)
	add("m.room.message", nil, map[string]any{"msgtype": "m.text", "body": "in thread",
		"m.relates_to": map[string]any{"rel_type": "m.thread", "event_id": root.EventID}}, false)
	add("m.room.message", nil, map[string]any{"msgtype": "m.text", "body": "again in thread",
		"m.relates_to": map[string]any{"rel_type": "m.thread", "event_id": root.EventID}}, false)
	add("m.reaction", nil, map[string]any{"m.relates_to": map[string]any{"rel_type": "m.annotation", "event_id": root.EventID, "key": "+1"}}, false)
	add("m.room.redaction", nil, map[string]any{"redacts": root.EventID}, false)
	sent := add("m.room.message", nil, map[string]any{"msgtype": "m.text", "body": "sent once"}, false)
	sent.TxnID, sent.DeviceID = "txn1", "D"+tag
	add("m.room.member", Str(user), map[string]any{"membership": "leave"}, false)
	add("m.room.message", nil, map[string]any{"msgtype": "m.text", "body": "long ago"}, true)
	return events
}

// TestBatch_WritesWhatPersistWrites persists the events of a room one by
// one, as the client API does, into one database, and the same events in
// one batch into another: the two databases hold the same rows.
func TestBatch_WritesWhatPersistWrites(t *testing.T) {
	dbtest.Engines(t, func(t *testing.T, e db.Engine) {
		ctx := context.Background()
		one, many := newDB(t, e, 0), newDB(t, e, 0)
		s1, s2 := New(one, "example.org", "master"), New(many, "example.org", "master")

		events := roomEvents("x", 0)
		for _, s := range []*Store{s1, s2} {
			b, err := s.NewBatch(0)
			if err != nil {
				t.Fatal(err)
			}
			aroundRoom(b, "x", 0, events)
			inTx(t, s.DB, func(tx *sql.Tx) error {
				_, err := b.Flush(ctx, tx)
				return err
			})
		}
		for _, ev := range events {
			c := *ev
			c.PrevEvents, c.StreamOrdering, c.StateGroup, c.PrevStateGroup = nil, 0, 0, 0
			if !c.Backfilled {
				c.Depth = 0
			}
			inTx(t, one, func(tx *sql.Tx) error { return s1.Persist(ctx, tx, &c) })
			if c.StreamOrdering != ev.StreamOrdering || c.Depth != ev.Depth || c.StateGroup != ev.StateGroup || c.PrevStateGroup != ev.PrevStateGroup {
				t.Fatalf("%s persisted at stream %d depth %d group %d (after %d), the batch has %d %d %d (%d)", ev.EventID,
					c.StreamOrdering, c.Depth, c.StateGroup, c.PrevStateGroup, ev.StreamOrdering, ev.Depth, ev.StateGroup, ev.PrevStateGroup)
			}
		}
		b, err := s2.NewBatch(0)
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range events {
			if err := b.Add(ev); err != nil {
				t.Fatal(err)
			}
		}
		inTx(t, many, func(tx *sql.Tx) error {
			_, err := b.Flush(ctx, tx)
			return err
		})
		// Sequences are advanced by Persist only: their values are not
		// rows. hsops_engine holds the creation time.
		if got, want := dbtest.Contents(t, many, "hsops_engine"), dbtest.Contents(t, one, "hsops_engine"); got != want {
			t.Fatalf("the batch wrote other rows than Persist:\n%s", dbtest.DiffLines(want, got))
		}
	})
}

func TestNewBatch_RefusesOlderThanTheStoreWrites(t *testing.T) {
	s := New(&db.DB{Engine: db.SQLite}, "example.org", "master")
	if _, err := s.NewBatch(OldestVersion - 1); err == nil || !strings.Contains(err.Error(), "older than the oldest") {
		t.Fatalf("got %v", err)
	}
}

func TestAdded_NamesTablesAndColumnsTheStoreWrites(t *testing.T) {
	known := map[string]bool{}
	for _, s := range tables {
		known[s.name] = true
		for _, c := range s.cols {
			known[s.name+"."+c.name] = true
		}
	}
	for _, a := range added {
		if !known[a.name] {
			t.Errorf("added names %q, which the store does not write", a.name)
		}
	}
}
