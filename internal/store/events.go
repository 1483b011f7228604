package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"

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

// Persist writes an event with everything Synapse writes with it: the
// event and its JSON, edges to its prev events, auth edges, the state group
// it belongs to (a new one for a state event, with an edge to the previous
// group and only the changed entry, as Synapse stores state deltas), the
// current state and memberships, the search row, relations and threads,
// redactions, forward extremities and room depth. PrevEvents and Depth are
// filled from the room's extremities when empty.
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
	var stateKey any
	if e.StateKey != nil {
		stateKey = *e.StateKey
	}
	content, _ := json.Marshal(e.Content)
	_, containsURL := e.Content["url"]
	if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO events (stream_ordering, topological_ordering, event_id, type, room_id, content,
		processed, outlier, depth, origin_server_ts, received_ts, sender, contains_url, instance_name, state_key)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
		e.StreamOrdering, e.Depth, e.EventID, e.Type, e.RoomID, string(content), true, false, e.Depth, e.OriginServerTS,
		e.OriginServerTS, e.Sender, containsURL, s.Instance, stateKey); err != nil {
		return fmt.Errorf("insert event: %w", err)
	}
	if _, err := tx.ExecContext(ctx, s.q("INSERT INTO event_json (event_id, room_id, internal_metadata, json, format_version) VALUES (?, ?, ?, ?, 3)"),
		e.EventID, e.RoomID, "{}", e.JSON()); err != nil {
		return fmt.Errorf("insert event json: %w", err)
	}
	for _, prev := range e.PrevEvents {
		if _, err := tx.ExecContext(ctx, s.q("INSERT INTO event_edges (event_id, prev_event_id, room_id, is_state) VALUES (?, ?, ?, ?)"),
			e.EventID, prev, e.RoomID, false); err != nil {
			return fmt.Errorf("insert event edge: %w", err)
		}
	}
	for _, a := range e.AuthEvents {
		if _, err := tx.ExecContext(ctx, s.q("INSERT INTO event_auth (event_id, auth_id, room_id) VALUES (?, ?, ?)"), e.EventID, a, e.RoomID); err != nil {
			return fmt.Errorf("insert auth edge: %w", err)
		}
	}
	group := rs.group
	if e.IsState() && !e.Backfilled {
		if group, err = s.newStateGroup(ctx, tx, e, rs.group); err != nil {
			return err
		}
		if err := s.updateCurrentState(ctx, tx, e); err != nil {
			return err
		}
	}
	if group != 0 {
		if _, err := tx.ExecContext(ctx, s.q("INSERT INTO event_to_state_groups (event_id, state_group) VALUES (?, ?)"), e.EventID, group); err != nil {
			return fmt.Errorf("insert event state group: %w", err)
		}
	}
	if err := s.indexSearch(ctx, tx, e); err != nil {
		return err
	}
	if err := s.relations(ctx, tx, e); err != nil {
		return err
	}
	if !e.Backfilled {
		for _, prev := range e.PrevEvents {
			if _, err := tx.ExecContext(ctx, s.q("DELETE FROM event_forward_extremities WHERE event_id = ? AND room_id = ?"), prev, e.RoomID); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, s.q("INSERT INTO event_forward_extremities (event_id, room_id) VALUES (?, ?)"), e.EventID, e.RoomID); err != nil {
			return fmt.Errorf("insert extremity: %w", err)
		}
	}
	if e.TxnID != "" && e.DeviceID != "" {
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO event_txn_id_device_id (event_id, room_id, user_id, device_id, txn_id, inserted_ts)
			VALUES (?, ?, ?, ?, ?, ?)`), e.EventID, e.RoomID, e.Sender, e.DeviceID, e.TxnID, e.OriginServerTS); err != nil {
			return fmt.Errorf("record transaction: %w", err)
		}
	}
	return nil
}

// newStateGroup stores a state event's group as a delta on the previous
// group: the changed entry, and an edge to the previous group.
func (s *Store) newStateGroup(ctx context.Context, tx *sql.Tx, e *Event, prev int64) (int64, error) {
	id, err := s.nextID(ctx, tx, "state_group_id_seq")
	if err != nil {
		return 0, err
	}
	if _, err := tx.ExecContext(ctx, s.q("INSERT INTO state_groups (id, room_id, event_id) VALUES (?, ?, ?)"), id, e.RoomID, e.EventID); err != nil {
		return 0, fmt.Errorf("insert state group: %w", err)
	}
	if _, err := tx.ExecContext(ctx, s.q("INSERT INTO state_groups_state (state_group, room_id, type, state_key, event_id) VALUES (?, ?, ?, ?, ?)"),
		id, e.RoomID, e.Type, *e.StateKey, e.EventID); err != nil {
		return 0, fmt.Errorf("insert state: %w", err)
	}
	if prev != 0 {
		if _, err := tx.ExecContext(ctx, s.q("INSERT INTO state_group_edges (state_group, prev_state_group) VALUES (?, ?)"), id, prev); err != nil {
			return 0, fmt.Errorf("insert state group edge: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, s.q("INSERT INTO state_events (event_id, room_id, type, state_key) VALUES (?, ?, ?, ?)"),
		e.EventID, e.RoomID, e.Type, *e.StateKey); err != nil {
		return 0, fmt.Errorf("insert state event: %w", err)
	}
	return id, nil
}

// updateCurrentState replaces the room's current entry for the event's
// (type, state_key), and for memberships the membership tables.
func (s *Store) updateCurrentState(ctx context.Context, tx *sql.Tx, e *Event) error {
	var membership any
	if e.Type == "m.room.member" {
		m, _ := e.Content["membership"].(string)
		membership = m
	}
	if _, err := tx.ExecContext(ctx, s.q("DELETE FROM current_state_events WHERE room_id = ? AND type = ? AND state_key = ?"), e.RoomID, e.Type, *e.StateKey); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO current_state_events (event_id, room_id, type, state_key, membership, event_stream_ordering)
		VALUES (?, ?, ?, ?, ?, ?)`), e.EventID, e.RoomID, e.Type, *e.StateKey, membership, e.StreamOrdering); err != nil {
		return fmt.Errorf("update current state: %w", err)
	}
	if e.Type != "m.room.member" {
		return nil
	}
	user := *e.StateKey
	display, _ := e.Content["displayname"].(string)
	avatar, _ := e.Content["avatar_url"].(string)
	if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO room_memberships (event_id, user_id, sender, room_id, membership, display_name, avatar_url, event_stream_ordering)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`), e.EventID, user, e.Sender, e.RoomID, membership, nullString(display), nullString(avatar), e.StreamOrdering); err != nil {
		return fmt.Errorf("insert membership: %w", err)
	}
	if !strings.HasSuffix(user, ":"+s.ServerName) {
		return nil
	}
	if _, err := tx.ExecContext(ctx, s.q("DELETE FROM local_current_membership WHERE user_id = ? AND room_id = ?"), user, e.RoomID); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, s.q(`INSERT INTO local_current_membership (room_id, user_id, event_id, membership, event_stream_ordering)
		VALUES (?, ?, ?, ?, ?)`), e.RoomID, user, e.EventID, membership, e.StreamOrdering)
	return err
}

// searchKeys are the content fields Synapse indexes, by event type.
var searchKeys = map[string][2]string{
	"m.room.message": {"content.body", "body"},
	"m.room.name":    {"content.name", "name"},
	"m.room.topic":   {"content.topic", "topic"},
}

func (s *Store) indexSearch(ctx context.Context, tx *sql.Tx, e *Event) error {
	k, ok := searchKeys[e.Type]
	if !ok {
		return nil
	}
	value, _ := e.Content[k[1]].(string)
	if value == "" {
		return nil
	}
	var err error
	if s.DB.Engine == db.Postgres {
		_, err = tx.ExecContext(ctx, `INSERT INTO event_search (event_id, room_id, sender, key, vector, origin_server_ts, stream_ordering)
			VALUES ($1, $2, $3, $4, to_tsvector('english', $5), $6, $7)`, e.EventID, e.RoomID, e.Sender, k[0], value, e.OriginServerTS, e.StreamOrdering)
	} else {
		_, err = tx.ExecContext(ctx, "INSERT INTO event_search (event_id, room_id, sender, key, value) VALUES (?, ?, ?, ?, ?)", e.EventID, e.RoomID, e.Sender, k[0], value)
	}
	if err != nil {
		return fmt.Errorf("index for search: %w", err)
	}
	return nil
}

// relations records m.relates_to (threads, reactions, edits) and
// redactions.
func (s *Store) relations(ctx context.Context, tx *sql.Tx, e *Event) error {
	if e.Type == "m.room.redaction" {
		if redacts, _ := e.Content["redacts"].(string); redacts != "" {
			if _, err := tx.ExecContext(ctx, s.q("INSERT INTO redactions (event_id, redacts, have_censored, received_ts) VALUES (?, ?, ?, ?)"),
				e.EventID, redacts, false, e.OriginServerTS); err != nil {
				return fmt.Errorf("insert redaction: %w", err)
			}
		}
	}
	rel, _ := e.Content["m.relates_to"].(map[string]any)
	if rel == nil {
		return nil
	}
	typ, _ := rel["rel_type"].(string)
	parent, _ := rel["event_id"].(string)
	if typ == "" || parent == "" {
		return nil
	}
	var key any
	if k, ok := rel["key"].(string); ok {
		key = k
	}
	if _, err := tx.ExecContext(ctx, s.q("INSERT INTO event_relations (event_id, relates_to_id, relation_type, aggregation_key) VALUES (?, ?, ?, ?)"),
		e.EventID, parent, typ, key); err != nil {
		return fmt.Errorf("insert relation: %w", err)
	}
	if typ != "m.thread" {
		return nil
	}
	_, err := tx.ExecContext(ctx, s.q(`INSERT INTO threads (room_id, thread_id, latest_event_id, topological_ordering, stream_ordering)
		VALUES (?, ?, ?, ?, ?) ON CONFLICT (room_id, thread_id) DO UPDATE SET latest_event_id = excluded.latest_event_id,
		topological_ordering = excluded.topological_ordering, stream_ordering = excluded.stream_ordering`),
		e.RoomID, parent, e.EventID, e.Depth, e.StreamOrdering)
	return err
}
