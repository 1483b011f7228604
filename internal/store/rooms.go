package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"time"

	"hsops/internal/db"
	"hsops/internal/notifier"
)

// More errors of the room API.
var (
	// ErrNotInRoom means the user is not joined to the room.
	ErrNotInRoom = errors.New("not in room")
	// ErrBadToken means a pagination token cannot be read.
	ErrBadToken = errors.New("invalid pagination token")
)

// RoomOptions are the choices of /createRoom.
type RoomOptions struct {
	Name, Topic string
	// Public rooms can be joined by anyone (join_rules public); others by
	// invitation.
	Public bool
	// Visibility publishes the room in the directory.
	Visibility string
	Invite     []string
}

// ClientEvent is an event as the client API shows it.
type ClientEvent struct {
	EventID        string         `json:"event_id"`
	Type           string         `json:"type"`
	RoomID         string         `json:"room_id"`
	Sender         string         `json:"sender"`
	Content        map[string]any `json:"content"`
	OriginServerTS int64          `json:"origin_server_ts"`
	StateKey       *string        `json:"state_key,omitempty"`
	Unsigned       map[string]any `json:"unsigned"`
	// StreamOrdering is used for tokens; it is not part of the JSON.
	StreamOrdering int64 `json:"-"`
}

// roomLock serialises the writers of one room in this process, so that
// the extremities, depth and state group chain of a room stay a line. The
// rooms share a fixed set of mutexes by hash: nothing grows with the
// number of rooms (or of room IDs clients make up).
func (s *Store) roomLock(room string) func() {
	h := fnv.New32a()
	_, _ = h.Write([]byte(room))
	m := &s.rooms[h.Sum32()%uint32(len(s.rooms))]
	m.Lock()
	return m.Unlock
}

// now is the wall clock in milliseconds.
func now() int64 { return time.Now().UnixMilli() }

// NewRoomID returns a fresh room ID on this server.
func (s *Store) NewRoomID() string { return "!" + randomString(18, true) + ":" + s.ServerName }

// CreateRoom creates a room with Synapse's initial state events, in one
// transaction: m.room.create, the creator's join, power levels, join
// rules, history visibility, and the name and topic when given, then
// invitations.
func (s *Store) CreateRoom(ctx context.Context, creator User, opts RoomOptions) (string, error) {
	room := s.NewRoomID()
	joinRule := "invite"
	if opts.Public {
		joinRule = "public"
	}
	type state struct {
		typ, key string
		content  map[string]any
	}
	events := []state{
		{"m.room.create", "", map[string]any{"creator": creator.ID, "room_version": "10"}},
		{"m.room.member", creator.ID, map[string]any{"membership": "join", "displayname": s.displayName(ctx, s.DB, creator.ID)}},
		{"m.room.power_levels", "", map[string]any{
			"users": map[string]int{creator.ID: 100}, "users_default": 0, "events_default": 0, "state_default": 50,
			"ban": 50, "kick": 50, "redact": 50, "invite": 0,
		}},
		{"m.room.join_rules", "", map[string]any{"join_rule": joinRule}},
		{"m.room.history_visibility", "", map[string]any{"history_visibility": "shared"}},
	}
	if opts.Name != "" {
		events = append(events, state{"m.room.name", "", map[string]any{"name": opts.Name}})
	}
	if opts.Topic != "" {
		events = append(events, state{"m.room.topic", "", map[string]any{"topic": opts.Topic}})
	}
	for _, u := range opts.Invite {
		events = append(events, state{"m.room.member", u, map[string]any{"membership": "invite"}})
	}
	err := s.Tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO rooms (room_id, is_public, creator, room_version, has_auth_chain_index)
			VALUES (?, ?, ?, '10', ?)`), room, opts.Visibility == "public", creator.ID, false); err != nil {
			return fmt.Errorf("insert room: %w", err)
		}
		var auth []string
		ts := now()
		for _, st := range events {
			e := &Event{RoomID: room, Type: st.typ, Sender: creator.ID, StateKey: Str(st.key), Content: st.content, OriginServerTS: ts, AuthEvents: auth}
			if err := s.Persist(ctx, tx, e); err != nil {
				return err
			}
			switch st.typ {
			case "m.room.create", "m.room.power_levels", "m.room.join_rules":
				auth = append(auth, e.EventID)
			case "m.room.member":
				if st.key == creator.ID {
					auth = append(auth, e.EventID)
				}
				s.wakeAfter(tx, notifier.UserKey(st.key))
			}
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	return room, nil
}

// displayName is a user's profile name, or "" when unknown.
func (s *Store) displayName(ctx context.Context, q db.Querier, userID string) string {
	local, ok := s.Localpart(userID)
	if !ok {
		return ""
	}
	var name sql.NullString
	_ = q.QueryRowContext(ctx, s.q("SELECT displayname FROM profiles WHERE user_id = ?"), local).Scan(&name)
	return name.String
}

// Membership is a user's current membership of a room ("" for none).
func (s *Store) Membership(ctx context.Context, q db.Querier, userID, room string) (string, error) {
	var m sql.NullString
	err := q.QueryRowContext(ctx, s.q(`SELECT membership FROM current_state_events
		WHERE room_id = ? AND type = 'm.room.member' AND state_key = ?`), room, userID).Scan(&m)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return m.String, err
}

// stateContent reads the content of a current state event.
func (s *Store) stateContent(ctx context.Context, q db.Querier, room, typ, key string) (map[string]any, error) {
	var content sql.NullString
	err := q.QueryRowContext(ctx, s.q(`SELECT e.content FROM current_state_events AS c JOIN events AS e ON e.event_id = c.event_id
		WHERE c.room_id = ? AND c.type = ? AND c.state_key = ?`), room, typ, key).Scan(&content)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var m map[string]any
	_ = json.Unmarshal([]byte(content.String), &m)
	return m, nil
}

// authFor lists the auth events of a new event in a room: create, power
// levels, join rules and the sender's membership.
func (s *Store) authFor(ctx context.Context, q db.Querier, room, sender string) ([]string, error) {
	rows, err := q.QueryContext(ctx, s.q(`SELECT event_id FROM current_state_events WHERE room_id = ?
		AND ((type IN ('m.room.create', 'm.room.power_levels', 'm.room.join_rules') AND state_key = '')
		  OR (type = 'm.room.member' AND state_key = ?))
		ORDER BY type`), room, sender)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		out = append(out, id)
	}
	return out, rows.Err()
}

// SetMembership changes a user's membership of a room: join (allowed when
// the room's join rule is public or the user is invited), leave (allowed
// when joined or invited) or invite (by a joined member). A join or leave
// that changes nothing sends no event. It returns the membership event's ID.
func (s *Store) SetMembership(ctx context.Context, sender, target, room, membership string) (string, error) {
	unlock := s.roomLock(room)
	defer unlock()
	var eventID string
	err := s.Tx(ctx, func(tx *sql.Tx) error {
		var exists int
		if err := tx.QueryRowContext(ctx, s.q("SELECT count(*) FROM rooms WHERE room_id = ?"), room).Scan(&exists); err != nil {
			return err
		}
		if exists == 0 {
			return fmt.Errorf("%w: unknown room %s", ErrNotFound, room)
		}
		current, err := s.Membership(ctx, tx, target, room)
		if err != nil {
			return err
		}
		switch membership {
		case "join":
			if current == "join" {
				return nil
			}
			if current != "invite" {
				rules, err := s.stateContent(ctx, tx, room, "m.room.join_rules", "")
				if err != nil {
					return err
				}
				if rules["join_rule"] != "public" {
					return fmt.Errorf("%w: you are not invited to this room", ErrForbidden)
				}
			}
		case "leave":
			if current != "join" && current != "invite" {
				return fmt.Errorf("%w: you are not in this room", ErrNotInRoom)
			}
		case "invite":
			own, err := s.Membership(ctx, tx, sender, room)
			if err != nil {
				return err
			}
			if own != "join" {
				return fmt.Errorf("%w: you are not in this room", ErrNotInRoom)
			}
			if current == "join" || current == "invite" {
				return fmt.Errorf("%w: %s is already in the room", ErrForbidden, target)
			}
		}
		auth, err := s.authFor(ctx, tx, room, sender)
		if err != nil {
			return err
		}
		content := map[string]any{"membership": membership}
		if membership == "join" {
			if name := s.displayName(ctx, tx, target); name != "" {
				content["displayname"] = name
			}
		}
		e := &Event{RoomID: room, Type: "m.room.member", Sender: sender, StateKey: Str(target), Content: content, OriginServerTS: now(), AuthEvents: auth}
		if err := s.Persist(ctx, tx, e); err != nil {
			return err
		}
		s.wakeAfter(tx, notifier.RoomKey(room), notifier.UserKey(target))
		eventID = e.EventID
		return nil
	})
	return eventID, err
}

// Send persists an event sent by a client, idempotently: the same
// transaction ID from the same device in the same room returns the event
// already sent. Only joined members may send.
func (s *Store) Send(ctx context.Context, u User, room, typ string, stateKey *string, content map[string]any, txnID string) (string, error) {
	unlock := s.roomLock(room)
	defer unlock()
	var eventID string
	err := s.Tx(ctx, func(tx *sql.Tx) error {
		if txnID != "" {
			err := tx.QueryRowContext(ctx, s.q(`SELECT event_id FROM event_txn_id_device_id
				WHERE room_id = ? AND user_id = ? AND device_id = ? AND txn_id = ?`), room, u.ID, u.DeviceID, txnID).Scan(&eventID)
			if err == nil {
				return nil
			}
			if !errors.Is(err, sql.ErrNoRows) {
				return err
			}
		}
		m, err := s.Membership(ctx, tx, u.ID, room)
		if err != nil {
			return err
		}
		if m != "join" {
			return fmt.Errorf("%w: you are not in this room", ErrNotInRoom)
		}
		if err := s.checkPower(ctx, tx, room, u.ID, typ, stateKey != nil); err != nil {
			return err
		}
		auth, err := s.authFor(ctx, tx, room, u.ID)
		if err != nil {
			return err
		}
		e := &Event{RoomID: room, Type: typ, Sender: u.ID, StateKey: stateKey, Content: content, OriginServerTS: now(),
			AuthEvents: auth, TxnID: txnID, DeviceID: u.DeviceID}
		if err := s.Persist(ctx, tx, e); err != nil {
			return err
		}
		s.wakeAfter(tx, notifier.RoomKey(room))
		eventID = e.EventID
		return nil
	})
	return eventID, err
}

// checkPower refuses an event whose sender's power level (m.room.power_levels:
// users, else users_default) is below what the event type needs (events,
// else state_default for state events and events_default for others).
func (s *Store) checkPower(ctx context.Context, q db.Querier, room, sender, typ string, state bool) error {
	pl, err := s.stateContent(ctx, q, room, "m.room.power_levels", "")
	if err != nil || pl == nil {
		return err
	}
	level := func(m any, key string, def float64) float64 {
		if mm, ok := m.(map[string]any); ok {
			if v, ok := mm[key].(float64); ok {
				return v
			}
		}
		return def
	}
	have := level(pl["users"], sender, level(pl, "users_default", 0))
	fallback := "events_default"
	if state {
		fallback = "state_default"
	}
	need := level(pl["events"], typ, level(pl, fallback, map[bool]float64{true: 50, false: 0}[state]))
	if have < need {
		return fmt.Errorf("%w: you need power level %v to send %s events in this room (you have %v)", ErrForbidden, need, typ, have)
	}
	return nil
}

// JoinedRooms lists the rooms a local user is joined to.
func (s *Store) JoinedRooms(ctx context.Context, userID string) ([]string, error) {
	rows, err := s.DB.QueryContext(ctx, s.q("SELECT room_id FROM local_current_membership WHERE user_id = ? AND membership = 'join' ORDER BY room_id"), userID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []string{}
	for rows.Next() {
		var r string
		if err := rows.Scan(&r); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// requireJoined refuses users who are not joined to the room.
func (s *Store) requireJoined(ctx context.Context, userID, room string) error {
	m, err := s.Membership(ctx, s.DB, userID, room)
	if err != nil {
		return err
	}
	if m != "join" {
		return fmt.Errorf("%w: you are not in this room", ErrNotInRoom)
	}
	return nil
}

// eventColumns are read, in this order, by scanEvents.
const eventColumns = "e.event_id, e.type, e.room_id, e.sender, e.content, e.origin_server_ts, e.state_key, e.stream_ordering"

// scanEvent reads the eventColumns of a row, after the extra columns given.
func scanEvent(rows *sql.Rows, extra ...any) (ClientEvent, error) {
	var (
		ev       ClientEvent
		content  sql.NullString
		stateKey sql.NullString
		ts       sql.NullInt64
	)
	dest := append(extra, &ev.EventID, &ev.Type, &ev.RoomID, &ev.Sender, &content, &ts, &stateKey, &ev.StreamOrdering)
	if err := rows.Scan(dest...); err != nil {
		return ev, err
	}
	ev.OriginServerTS = ts.Int64
	if stateKey.Valid {
		ev.StateKey = Str(stateKey.String)
	}
	ev.Content = map[string]any{}
	_ = json.Unmarshal([]byte(content.String), &ev.Content)
	ev.Unsigned = map[string]any{}
	return ev, nil
}

func scanEvents(rows *sql.Rows) ([]ClientEvent, error) {
	defer rows.Close()
	out := []ClientEvent{}
	for rows.Next() {
		ev, err := scanEvent(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, ev)
	}
	return out, rows.Err()
}

// RoomState is the room's current state, for a joined member.
func (s *Store) RoomState(ctx context.Context, userID, room string) ([]ClientEvent, error) {
	if err := s.requireJoined(ctx, userID, room); err != nil {
		return nil, err
	}
	rows, err := s.DB.QueryContext(ctx, s.q(`SELECT `+eventColumns+` FROM current_state_events AS c
		JOIN events AS e ON e.event_id = c.event_id WHERE c.room_id = ? ORDER BY e.stream_ordering`), room)
	if err != nil {
		return nil, err
	}
	return scanEvents(rows)
}

// Token renders a stream position as a pagination token.
func Token(stream int64) string { return "s" + strconv.FormatInt(stream, 10) }

// ParseToken reads a pagination token ("s<stream ordering>"; Synapse's
// topological tokens "t<topo>-<stream>" are read by their stream part).
func ParseToken(tok string) (int64, error) {
	orig := tok
	switch {
	case strings.HasPrefix(tok, "s"):
		tok = tok[1:]
	case strings.HasPrefix(tok, "t"):
		if i := strings.IndexByte(tok, '-'); i > 0 {
			tok = tok[i+1:]
		}
	}
	if i := strings.IndexByte(tok, '_'); i > 0 {
		tok = tok[:i]
	}
	n, err := strconv.ParseInt(tok, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: Invalid pagination token %q: use the start or end of an earlier /messages page", ErrBadToken, orig)
	}
	return n, nil
}

// Page is a page of /messages.
type Page struct {
	Chunk []ClientEvent `json:"chunk"`
	Start string        `json:"start"`
	End   string        `json:"end,omitempty"`
}

// Messages pages through a room's timeline by stream ordering, for a
// joined member. A token "sN" is the position after event N: backwards
// (dir "b") a page holds events at or before N (from empty: the newest
// position), forwards (dir "f") events after N (from empty: the oldest).
// Start is the position the page was read from; End, when there is more,
// the position to read the next page from, in the same direction.
func (s *Store) Messages(ctx context.Context, userID, room, from, dir string, limit int) (Page, error) {
	if err := s.requireJoined(ctx, userID, room); err != nil {
		return Page{}, err
	}
	var (
		pos int64
		err error
	)
	switch {
	case from != "":
		if pos, err = ParseToken(from); err != nil {
			return Page{}, err
		}
	case dir == "f":
		// Before the oldest event (backfilled ones are negative).
		if err := s.DB.QueryRowContext(ctx, "SELECT COALESCE(MIN(stream_ordering), 1) - 1 FROM events").Scan(&pos); err != nil {
			return Page{}, err
		}
	default:
		// The newest position, read first: an event committed while the
		// page is read is after it, and the next forward page finds it.
		if err := s.DB.QueryRowContext(ctx, "SELECT COALESCE(MAX(stream_ordering), 0) FROM events").Scan(&pos); err != nil {
			return Page{}, err
		}
	}
	q := `SELECT ` + eventColumns + ` FROM events AS e WHERE e.room_id = ? AND e.outlier = ?`
	if dir == "f" {
		q += " AND e.stream_ordering > ? ORDER BY e.stream_ordering ASC LIMIT ?"
	} else {
		q += " AND e.stream_ordering <= ? ORDER BY e.stream_ordering DESC LIMIT ?"
	}
	rows, err := s.DB.QueryContext(ctx, s.q(q), room, false, pos, limit+1)
	if err != nil {
		return Page{}, err
	}
	events, err := scanEvents(rows)
	if err != nil {
		return Page{}, err
	}
	p := Page{Chunk: events[:min(limit, len(events))], Start: Token(pos)}
	if len(events) > limit && limit > 0 {
		p.Chunk = events[:limit]
		last := p.Chunk[len(p.Chunk)-1].StreamOrdering
		if dir != "f" {
			last--
		}
		p.End = Token(last)
	}
	return p, nil
}

// SearchResult is one hit of /search.
type SearchResult struct {
	Rank   float64     `json:"rank"`
	Result ClientEvent `json:"result"`
}

// Search finds messages matching a term in the rooms the user is joined
// to (or the given ones among them), best first, using event_search: a
// tsvector match on PostgreSQL, FTS5 on SQLite. It returns up to limit
// results after the first offset ones, and the count of all matches.
func (s *Store) Search(ctx context.Context, userID, term string, rooms []string, limit, offset int) ([]SearchResult, int, error) {
	joined, err := s.JoinedRooms(ctx, userID)
	if err != nil {
		return nil, 0, err
	}
	if len(rooms) > 0 {
		allowed := map[string]bool{}
		for _, r := range joined {
			allowed[r] = true
		}
		var keep []string
		for _, r := range rooms {
			if allowed[r] {
				keep = append(keep, r)
			}
		}
		joined = keep
	}
	words := strings.Fields(term)
	if len(joined) == 0 || len(words) == 0 {
		return []SearchResult{}, 0, nil
	}
	marks := strings.TrimSuffix(strings.Repeat("?, ", len(joined)), ", ")
	// On SQLite the FTS5 table is named, not aliased: MATCH and bm25() take
	// the table itself.
	var (
		from, match, rank string
		args, rankArgs    []any
	)
	if s.DB.Engine == db.Postgres {
		from = "event_search AS t"
		match = "t.vector @@ plainto_tsquery('english', ?)"
		rank = "ts_rank_cd(t.vector, plainto_tsquery('english', ?))"
		args = []any{term}
		rankArgs = []any{term, term}
	} else {
		quoted := make([]string, len(words))
		for i, w := range words {
			quoted[i] = `"` + strings.ReplaceAll(w, `"`, `""`) + `"`
		}
		match = "event_search MATCH ?"
		rank = "-bm25(event_search)"
		args = []any{"value : (" + strings.Join(quoted, " ") + ")"}
		rankArgs = append([]any{}, args...)
		from = "event_search"
	}
	tbl := "t"
	if s.DB.Engine == db.SQLite {
		tbl = "event_search"
	}
	for _, r := range joined {
		args = append(args, r)
		rankArgs = append(rankArgs, r)
	}
	where := match + " AND " + tbl + ".room_id IN (" + marks + ")"
	var count int
	if err := s.DB.QueryRowContext(ctx, s.q("SELECT count(*) FROM "+from+" WHERE "+where), args...).Scan(&count); err != nil {
		return nil, 0, fmt.Errorf("search: %w", err)
	}
	rankArgs = append(rankArgs, limit, offset)
	q := `SELECT ` + rank + `, ` + eventColumns + ` FROM ` + from + ` JOIN events AS e ON e.event_id = ` + tbl + `.event_id
		WHERE ` + where + ` ORDER BY 1 DESC, e.stream_ordering DESC LIMIT ? OFFSET ?`
	rows, err := s.DB.QueryContext(ctx, s.q(q), rankArgs...)
	if err != nil {
		return nil, 0, fmt.Errorf("search: %w", err)
	}
	defer rows.Close()
	out := []SearchResult{}
	for rows.Next() {
		var r SearchResult
		ev, err := scanEvent(rows, &r.Rank)
		if err != nil {
			return nil, 0, err
		}
		r.Result = ev
		out = append(out, r)
	}
	return out, count, rows.Err()
}
