package store

import (
	"context"
	"database/sql"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"hsops/internal/notifier"
	"hsops/internal/sequences"
)

// The streams a sync token holds a position in. Each position is an id
// stored in the database (events.stream_ordering, receipts_linearized and
// the account data tables' stream_id), so a token stays valid across a
// restart, an upgrade, a rollback and a port; only typing, which is not
// stored, is a position in this process's memory (see typing).
const (
	streamEvents      = "events_stream_seq"
	streamReceipts    = "receipts_sequence"
	streamAccountData = "account_data_sequence"
)

// tracker follows the ids of one stream that this process hands out, so
// that the position it reports is one below the oldest id still in an open
// transaction: on PostgreSQL two transactions can commit their ids out of
// order, and a sync token past an uncommitted id would skip it for ever.
type tracker struct {
	done    int64 // the highest id committed (or in the database at start)
	pending map[int64]int
}

func (t *tracker) position() int64 {
	p := t.done
	for id := range t.pending {
		if id-1 < p {
			p = id - 1
		}
	}
	return p
}

// txState is what a transaction of Tx handed out and whom to wake when it
// commits.
type txState struct {
	ids  map[string][]int64
	wake []string
}

// streams are the trackers and open transactions of a store.
type streams struct {
	mu       sync.Mutex
	trackers map[string]*tracker
	txs      map[*sql.Tx]*txState
}

// InitStreams reads the streams' positions from the database. The server
// calls it once the schema is up to date and before it serves; until then
// positions are read from the database on each call.
func (s *Store) InitStreams(ctx context.Context) error {
	s.streams.mu.Lock()
	defer s.streams.mu.Unlock()
	for _, name := range []string{streamEvents, streamReceipts, streamAccountData} {
		seq, _ := sequences.Lookup(name)
		m, err := sequences.TableMax(ctx, s.DB, s.DB, seq)
		if err != nil {
			return fmt.Errorf("read the %s position: %w", name, err)
		}
		s.streams.trackers[name] = &tracker{done: m, pending: map[int64]int{}}
	}
	return nil
}

// allocated records an id handed out in a transaction of Tx.
func (s *Store) allocated(tx *sql.Tx, name string, id int64) {
	s.streams.mu.Lock()
	defer s.streams.mu.Unlock()
	t, st := s.streams.trackers[name], s.streams.txs[tx]
	if t == nil || st == nil {
		return
	}
	t.pending[id]++
	st.ids[name] = append(st.ids[name], id)
}

// wakeAfter wakes the listeners on keys once the transaction commits.
func (s *Store) wakeAfter(tx *sql.Tx, keys ...string) {
	s.streams.mu.Lock()
	defer s.streams.mu.Unlock()
	if st := s.streams.txs[tx]; st != nil {
		st.wake = append(st.wake, keys...)
	}
}

func (s *Store) beginTracking(tx *sql.Tx) {
	s.streams.mu.Lock()
	defer s.streams.mu.Unlock()
	s.streams.txs[tx] = &txState{ids: map[string][]int64{}}
}

// endTracking closes a transaction's ids (committed or not) and wakes its
// listeners when it committed.
func (s *Store) endTracking(tx *sql.Tx, committed bool) {
	s.streams.mu.Lock()
	st := s.streams.txs[tx]
	delete(s.streams.txs, tx)
	for name, ids := range st.ids {
		t := s.streams.trackers[name]
		for _, id := range ids {
			if t.pending[id]--; t.pending[id] <= 0 {
				delete(t.pending, id)
			}
			// A rolled-back id may be handed out again (SQLite reads the
			// maximum): only commits move the position.
			if committed && id > t.done {
				t.done = id
			}
		}
	}
	s.streams.mu.Unlock()
	if committed && len(st.wake) > 0 {
		s.Notifier.Wake(st.wake...)
	}
}

// SyncToken is a position in every stream /sync reads. It is written as
// Synapse writes its stream tokens: s<events>_<presence>_<typing>_
// <receipts>_<account data>_<push rules>_<to-device>_<device lists>_
// <groups>_<un-partial-stated rooms>; the streams the engine does not have
// are 0.
type SyncToken struct {
	Events, Typing, Receipts, AccountData int64
}

// String renders the token.
func (t SyncToken) String() string {
	return fmt.Sprintf("s%d_0_%d_%d_%d_0_0_0_0_0", t.Events, t.Typing, t.Receipts, t.AccountData)
}

// ParseSyncToken reads a token of String (or of Synapse: the same shape).
func ParseSyncToken(tok string) (SyncToken, error) {
	bad := fmt.Errorf("%w: Invalid stream token %q: use the next_batch of an earlier /sync", ErrBadToken, tok)
	if !strings.HasPrefix(tok, "s") {
		return SyncToken{}, bad
	}
	parts := strings.Split(tok[1:], "_")
	n := make([]int64, 5)
	for i := 0; i < len(parts) && i < len(n); i++ {
		v, err := strconv.ParseInt(parts[i], 10, 64)
		if err != nil || v < 0 {
			return SyncToken{}, bad
		}
		n[i] = v
	}
	return SyncToken{Events: n[0], Typing: n[2], Receipts: n[3], AccountData: n[4]}, nil
}

// Position is the current sync token: every id at or below it in each
// stream is committed.
func (s *Store) Position(ctx context.Context) (SyncToken, error) {
	var tok SyncToken
	s.streams.mu.Lock()
	ready := len(s.streams.trackers) > 0
	if ready {
		tok.Events = s.streams.trackers[streamEvents].position()
		tok.Receipts = s.streams.trackers[streamReceipts].position()
		tok.AccountData = s.streams.trackers[streamAccountData].position()
	}
	s.streams.mu.Unlock()
	if !ready {
		for _, st := range []struct {
			name string
			dst  *int64
		}{{streamEvents, &tok.Events}, {streamReceipts, &tok.Receipts}, {streamAccountData, &tok.AccountData}} {
			seq, _ := sequences.Lookup(st.name)
			m, err := sequences.TableMax(ctx, s.DB, s.DB, seq)
			if err != nil {
				return tok, err
			}
			*st.dst = m
		}
	}
	tok.Typing = s.typing.position()
	return tok, nil
}

// typing is the in-memory typing state: who types in which room, until
// when. Its positions start at the process's start time in milliseconds,
// so a token of an earlier process is always behind and its client gets
// the current typing state.
type typing struct {
	mu     sync.Mutex
	serial int64
	rooms  map[string]*roomTyping
}

type roomTyping struct {
	serial int64
	users  map[string]*time.Timer
}

func newTyping() *typing {
	return &typing{serial: time.Now().UnixMilli(), rooms: map[string]*roomTyping{}}
}

func (t *typing) position() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.serial
}

// SetTyping marks a user as typing in a room for timeout, or as no longer
// typing, and wakes the room's listeners.
func (s *Store) SetTyping(room, user string, on bool, timeout time.Duration) {
	t := s.typing
	t.mu.Lock()
	rt := t.rooms[room]
	if rt == nil {
		rt = &roomTyping{users: map[string]*time.Timer{}}
		t.rooms[room] = rt
	}
	old, was := rt.users[user]
	if was {
		old.Stop()
		delete(rt.users, user)
	}
	if on {
		var timer *time.Timer
		timer = time.AfterFunc(timeout, func() {
			t.mu.Lock()
			if rt.users[user] != timer {
				t.mu.Unlock()
				return
			}
			delete(rt.users, user)
			t.serial++
			rt.serial = t.serial
			t.mu.Unlock()
			s.Notifier.Wake(notifier.RoomKey(room))
		})
		rt.users[user] = timer
	}
	changed := was != on
	if changed {
		t.serial++
		rt.serial = t.serial
	}
	t.mu.Unlock()
	if changed {
		s.Notifier.Wake(notifier.RoomKey(room))
	}
}

// typingIn returns who types in a room and whether that changed after
// since (or, with since 0, whether anyone types).
func (s *Store) typingIn(room string, since int64) ([]string, bool) {
	t := s.typing
	t.mu.Lock()
	defer t.mu.Unlock()
	rt := t.rooms[room]
	if rt == nil {
		return nil, false
	}
	users := make([]string, 0, len(rt.users))
	for u := range rt.users {
		users = append(users, u)
	}
	sort.Strings(users)
	if since == 0 {
		return users, len(users) > 0
	}
	return users, rt.serial > since
}
