package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/json"

	"hsops/internal/db"
)

// Event is a room event to persist.
type Event struct {
	EventID        string
	RoomID         string
	Type           string
	Sender         string
	StateKey       *string
	Content        map[string]any
	Depth          int64
	OriginServerTS int64
	PrevEvents     []string
	AuthEvents     []string
	// StreamOrdering is assigned when persisted (negative for backfill).
	StreamOrdering int64
	// Backfilled events get a negative stream ordering.
	Backfilled bool
	// TxnID and DeviceID record a client transaction for idempotency.
	TxnID, DeviceID string
	// StateGroup is the state group the event belongs to (0: none). For a
	// state event that is not backfilled it is a new group holding the
	// event, on top of PrevStateGroup (0: the room's first). Persist sets
	// both.
	StateGroup, PrevStateGroup int64
}

// IsState reports whether the event is a state event.
func (e *Event) IsState() bool { return e.StateKey != nil }

// JSON renders the event as the federation format stores it.
func (e *Event) JSON() string {
	m := map[string]any{
		"auth_events": nonNil(e.AuthEvents), "prev_events": nonNil(e.PrevEvents), "type": e.Type, "room_id": e.RoomID,
		"sender": e.Sender, "content": e.Content, "depth": e.Depth, "origin_server_ts": e.OriginServerTS,
		"hashes": map[string]string{"sha256": hashOf(e.EventID)}, "signatures": map[string]any{}, "unsigned": map[string]any{},
	}
	if e.StateKey != nil {
		m["state_key"] = *e.StateKey
	}
	data, _ := json.Marshal(m)
	return string(data)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func hashOf(s string) string {
	h := sha256.Sum256([]byte(s))
	return base64.RawStdEncoding.EncodeToString(h[:])
}

// NewEventID returns a fresh event ID (room version 4+ style).
func NewEventID() string { return "$" + RandomToken(32) }

// Str returns a pointer to s (for state keys).
func Str(s string) *string { return &s }

// roomState is a room's current state group and membership-relevant facts.
type roomState struct {
	group int64
	depth int64
	// extremities are the forward extremities.
	extremities []string
}

func (s *Store) roomState(ctx context.Context, q db.Querier, room string) (roomState, error) {
	var rs roomState
	rows, err := q.QueryContext(ctx, s.q(`SELECT f.event_id, e.depth, coalesce(g.state_group, 0) FROM event_forward_extremities AS f
		JOIN events AS e ON e.event_id = f.event_id
		LEFT JOIN event_to_state_groups AS g ON g.event_id = f.event_id
		WHERE f.room_id = ? ORDER BY e.stream_ordering DESC`), room)
	if err != nil {
		return rs, err
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var depth, group int64
		if err := rows.Scan(&id, &depth, &group); err != nil {
			return rs, err
		}
		rs.extremities = append(rs.extremities, id)
		if depth > rs.depth {
			rs.depth = depth
		}
		if rs.group == 0 {
			rs.group = group
		}
	}
	return rs, rows.Err()
}

// Persist writes an event with everything Synapse writes with it (see
// Batch.Add). PrevEvents and Depth are filled from the room's extremities
// when empty; the stream ordering and, for a state event, the new state
// group are taken from their sequences.
func (s *Store) Persist(ctx context.Context, tx *sql.Tx, e *Event) error {
	if e.EventID == "" {
		e.EventID = NewEventID()
	}
	rs, err := s.roomState(ctx, tx, e.RoomID)
	if err != nil {
		return err
	}
	if e.PrevEvents == nil && !e.Backfilled {
		e.PrevEvents = rs.extremities
	}
	if e.Depth == 0 {
		e.Depth = rs.depth + 1
	}
	seq := "events_stream_seq"
	if e.Backfilled {
		seq = "events_backfill_stream_seq"
	}
	if e.StreamOrdering, err = s.nextID(ctx, tx, seq); err != nil {
		return err
	}
	e.StateGroup = rs.group
	if e.IsState() && !e.Backfilled {
		e.PrevStateGroup = rs.group
		if e.StateGroup, err = s.nextID(ctx, tx, "state_group_id_seq"); err != nil {
			return err
		}
	}
	b, err := s.NewBatch(0)
	if err != nil {
		return err
	}
	if err := b.Add(e); err != nil {
		return err
	}
	_, err = b.Flush(ctx, tx)
	return err
}
