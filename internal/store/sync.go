package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"sort"
	"strings"

	"hsops/internal/notifier"
)

// SyncRequest is what a /sync asks for.
type SyncRequest struct {
	UserID string
	// Since is the client's token; nil for an initial sync.
	Since     *SyncToken
	FullState bool
	// TimelineLimit is the filter's room.timeline.limit (Synapse's
	// default is 10, which the caller sets).
	TimelineLimit int
	// LazyMembers is room.state.lazy_load_members: only the members who
	// sent the timeline's events (and the user) are in the state.
	LazyMembers bool
}

// Events is a list of events as /sync nests them.
type Events struct {
	Events []any `json:"events"`
}

// Timeline is a room's timeline in /sync.
type Timeline struct {
	Events    []ClientEvent `json:"events"`
	Limited   bool          `json:"limited"`
	PrevBatch string        `json:"prev_batch"`
}

// UnreadCounts are a joined room's unread_notifications.
type UnreadCounts struct {
	NotificationCount int64 `json:"notification_count"`
	HighlightCount    int64 `json:"highlight_count"`
}

// JoinedRoom is a room of rooms.join.
type JoinedRoom struct {
	Summary     map[string]any `json:"summary"`
	State       Events         `json:"state"`
	Timeline    Timeline       `json:"timeline"`
	Ephemeral   Events         `json:"ephemeral"`
	AccountData Events         `json:"account_data"`
	Unread      UnreadCounts   `json:"unread_notifications"`
}

// InvitedRoom is a room of rooms.invite.
type InvitedRoom struct {
	InviteState Events `json:"invite_state"`
}

// LeftRoom is a room of rooms.leave.
type LeftRoom struct {
	State       Events   `json:"state"`
	Timeline    Timeline `json:"timeline"`
	AccountData Events   `json:"account_data"`
}

// Rooms is the rooms section of /sync.
type Rooms struct {
	Join   map[string]*JoinedRoom  `json:"join"`
	Invite map[string]*InvitedRoom `json:"invite"`
	Leave  map[string]*LeftRoom    `json:"leave"`
}

// DeviceLists is the (empty: the engine has no E2EE) device_lists section.
type DeviceLists struct {
	Changed []string `json:"changed"`
	Left    []string `json:"left"`
}

// SyncResponse is the body of /sync.
type SyncResponse struct {
	NextBatch   string         `json:"next_batch"`
	Rooms       Rooms          `json:"rooms"`
	AccountData Events         `json:"account_data"`
	Presence    Events         `json:"presence"`
	ToDevice    Events         `json:"to_device"`
	DeviceLists DeviceLists    `json:"device_lists"`
	OTKCount    map[string]int `json:"device_one_time_keys_count"`
	// Listen are the notifier keys of the rooms the user is in: what a
	// long-poll waits on.
	Listen []string `json:"-"`
}

// Empty reports whether the response holds nothing new for the client.
func (r *SyncResponse) Empty() bool {
	return len(r.Rooms.Join) == 0 && len(r.Rooms.Invite) == 0 && len(r.Rooms.Leave) == 0 && len(r.AccountData.Events) == 0
}

func newSyncResponse(pos SyncToken) *SyncResponse {
	return &SyncResponse{
		NextBatch:   pos.String(),
		Rooms:       Rooms{Join: map[string]*JoinedRoom{}, Invite: map[string]*InvitedRoom{}, Leave: map[string]*LeftRoom{}},
		AccountData: Events{Events: []any{}}, Presence: Events{Events: []any{}}, ToDevice: Events{Events: []any{}},
		DeviceLists: DeviceLists{Changed: []string{}, Left: []string{}}, OTKCount: map[string]int{"signed_curve25519": 0},
	}
}

// before is lower than every stream ordering (backfilled events are
// negative).
const before = -(1 << 62)

// membershipRow is a user's current membership of a room.
type membershipRow struct {
	room, membership, eventID string
	pos                       int64
}

// Sync reads what changed for a user between req.Since and pos (a
// Position read before): the rooms joined (timeline, state, typing,
// receipts, room account data, unread counts), invited and left, and the
// global account data. Everything is bounded by pos, so the next sync from
// pos neither misses nor repeats anything.
func (s *Store) Sync(ctx context.Context, req SyncRequest, pos SyncToken) (*SyncResponse, error) {
	resp := newSyncResponse(pos)
	req.TimelineLimit = max(req.TimelineLimit, 0)
	since := SyncToken{Events: before, Receipts: -1, AccountData: -1}
	if req.Since != nil {
		since = *req.Since
	}
	members, err := s.memberships(ctx, req.UserID)
	if err != nil {
		return nil, err
	}
	var incremental []string
	for _, m := range members {
		if m.membership == "join" {
			resp.Listen = append(resp.Listen, notifier.RoomKey(m.room))
		}
		if m.pos > pos.Events {
			// Changed after pos: the next sync shows it.
			continue
		}
		changed := m.pos > since.Events
		switch m.membership {
		case "join":
			fresh := req.Since == nil || req.FullState
			if !fresh && changed {
				prev, err := s.membershipAt(ctx, req.UserID, m.room, since.Events)
				if err != nil {
					return nil, err
				}
				fresh = prev != "join"
			}
			if !fresh {
				incremental = append(incremental, m.room)
				continue
			}
			jr, err := s.fullRoom(ctx, req, m.room, since, pos)
			if err != nil {
				return nil, err
			}
			resp.Rooms.Join[m.room] = jr
		case "invite":
			if req.Since == nil || changed {
				st, err := s.inviteState(ctx, m.room, req.UserID)
				if err != nil {
					return nil, err
				}
				resp.Rooms.Invite[m.room] = &InvitedRoom{InviteState: Events{Events: st}}
			}
		case "leave", "ban":
			if req.Since != nil && changed {
				lr, err := s.leftRoom(ctx, req, m, since)
				if err != nil {
					return nil, err
				}
				resp.Rooms.Leave[m.room] = lr
			}
		}
	}
	if len(incremental) > 0 {
		if err := s.incrementalRooms(ctx, req, incremental, since, pos, resp); err != nil {
			return nil, err
		}
	}
	if since.AccountData >= pos.AccountData {
		return resp, nil
	}
	rows, err := s.DB.QueryContext(ctx, s.q(`SELECT account_data_type, content FROM account_data
		WHERE user_id = ? AND stream_id > ? AND stream_id <= ? ORDER BY stream_id`), req.UserID, since.AccountData, pos.AccountData)
	if err != nil {
		return nil, err
	}
	ad, err := scanAccountData(rows)
	if err != nil {
		return nil, err
	}
	resp.AccountData.Events = ad
	return resp, nil
}

func scanAccountData(rows *sql.Rows) ([]any, error) {
	defer rows.Close()
	out := []any{}
	for rows.Next() {
		var typ, content string
		if err := rows.Scan(&typ, &content); err != nil {
			return nil, err
		}
		out = append(out, map[string]any{"type": typ, "content": json.RawMessage(content)})
	}
	return out, rows.Err()
}

func (s *Store) memberships(ctx context.Context, userID string) ([]membershipRow, error) {
	rows, err := s.DB.QueryContext(ctx, s.q(`SELECT m.room_id, m.membership, m.event_id, e.stream_ordering FROM local_current_membership AS m
		JOIN events AS e ON e.event_id = m.event_id WHERE m.user_id = ? ORDER BY m.room_id`), userID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []membershipRow
	for rows.Next() {
		var m membershipRow
		if err := rows.Scan(&m.room, &m.membership, &m.eventID, &m.pos); err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// membershipAt is a user's membership of a room at a stream position.
func (s *Store) membershipAt(ctx context.Context, userID, room string, at int64) (string, error) {
	var m string
	err := s.DB.QueryRowContext(ctx, s.q(`SELECT rm.membership FROM room_memberships AS rm JOIN events AS e ON e.event_id = rm.event_id
		WHERE rm.user_id = ? AND rm.room_id = ? AND e.stream_ordering <= ? ORDER BY e.stream_ordering DESC LIMIT 1`), userID, room, at).Scan(&m)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return m, err
}

// timeline reads up to limit events of a room in (from, to], oldest first,
// and whether there were more.
func (s *Store) timeline(ctx context.Context, room string, from, to int64, limit int) (Timeline, error) {
	rows, err := s.DB.QueryContext(ctx, s.q(`SELECT `+eventColumns+` FROM events AS e WHERE e.room_id = ? AND e.outlier = ?
		AND e.stream_ordering > ? AND e.stream_ordering <= ? ORDER BY e.stream_ordering DESC LIMIT ?`), room, false, from, to, limit+1)
	if err != nil {
		return Timeline{}, err
	}
	events, err := scanEvents(rows)
	if err != nil {
		return Timeline{}, err
	}
	return makeTimeline(events, limit, to), nil
}

// makeTimeline turns events newest first into a timeline of at most limit
// events, oldest first. prev_batch is the /messages token before the first
// event (or at to for an empty timeline).
func makeTimeline(newestFirst []ClientEvent, limit int, to int64) Timeline {
	tl := Timeline{Limited: len(newestFirst) > limit}
	if tl.Limited {
		newestFirst = newestFirst[:limit]
	}
	tl.Events = make([]ClientEvent, len(newestFirst))
	for i, ev := range newestFirst {
		tl.Events[len(newestFirst)-1-i] = ev
	}
	tl.PrevBatch = Token(to)
	if len(tl.Events) > 0 {
		tl.PrevBatch = Token(tl.Events[0].StreamOrdering - 1)
	}
	return tl
}

// currentState reads a room's current state events at or before to and
// after from.
func (s *Store) currentState(ctx context.Context, rooms []string, from, to int64) ([]ClientEvent, error) {
	args := []any{from, to}
	for _, r := range rooms {
		args = append(args, r)
	}
	// From the events in the range (few, by the (room_id, stream_ordering)
	// index) on an incremental sync; from the current state on a full one.
	q := `SELECT ` + eventColumns + ` FROM events AS e JOIN current_state_events AS c ON c.event_id = e.event_id
		WHERE e.stream_ordering > ? AND e.stream_ordering <= ? AND e.room_id IN (` + marks(len(rooms)) + `) ORDER BY e.stream_ordering`
	if from == before {
		q = `SELECT ` + eventColumns + ` FROM current_state_events AS c JOIN events AS e ON e.event_id = c.event_id
		WHERE e.stream_ordering > ? AND e.stream_ordering <= ? AND c.room_id IN (` + marks(len(rooms)) + `) ORDER BY e.stream_ordering`
	}
	rows, err := s.DB.QueryContext(ctx, s.q(q), args...)
	if err != nil {
		return nil, err
	}
	return scanEvents(rows)
}

func marks(n int) string { return strings.TrimSuffix(strings.Repeat("?, ", n), ", ") }

// stateFor keeps the state events that are not in the timeline (and, with
// lazy-loaded members, only the members who sent timeline events, and the
// user).
func stateFor(req SyncRequest, state []ClientEvent, tl Timeline) []any {
	inTimeline := map[string]bool{}
	senders := map[string]bool{req.UserID: true}
	for _, ev := range tl.Events {
		inTimeline[ev.EventID] = true
		senders[ev.Sender] = true
	}
	out := []any{}
	for _, ev := range state {
		if inTimeline[ev.EventID] {
			continue
		}
		if req.LazyMembers && ev.Type == "m.room.member" && ev.StateKey != nil && !senders[*ev.StateKey] {
			continue
		}
		out = append(out, ev)
	}
	return out
}

// fullRoom is a joined room with its whole state: on an initial sync, with
// full_state, or when the user joined since the token.
func (s *Store) fullRoom(ctx context.Context, req SyncRequest, room string, since, pos SyncToken) (*JoinedRoom, error) {
	from := int64(before)
	if req.Since != nil && !req.FullState {
		from = since.Events
	}
	tl, err := s.timeline(ctx, room, from, pos.Events, req.TimelineLimit)
	if err != nil {
		return nil, err
	}
	if req.Since != nil && !req.FullState {
		// Joined since the token: what came before is new to the client.
		tl.Limited = true
	}
	state, err := s.currentState(ctx, []string{room}, before, pos.Events)
	if err != nil {
		return nil, err
	}
	jr := emptyRoom()
	jr.Timeline, jr.State.Events = tl, stateFor(req, state, tl)
	jrs := map[string]*JoinedRoom{room: jr}
	everything := SyncToken{Receipts: -1, AccountData: -1}
	if req.FullState && req.Since != nil {
		// full_state: the whole state, but only the new ephemeral events.
		everything = *req.Since
	}
	if err := s.ephemeral(ctx, req.UserID, jrs, everything, pos); err != nil {
		return nil, err
	}
	if err := s.roomAccountData(ctx, req.UserID, jrs, everything, pos); err != nil {
		return nil, err
	}
	if err := s.finishRoom(ctx, req.UserID, room, jr, pos, true); err != nil {
		return nil, err
	}
	return jr, nil
}

func emptyRoom() *JoinedRoom {
	return &JoinedRoom{State: Events{Events: []any{}}, Ephemeral: Events{Events: []any{}}, AccountData: Events{Events: []any{}}, Summary: map[string]any{}}
}

// incrementalCap bounds the events an incremental sync reads at once; past
// it, each room is read on its own.
const incrementalCap = 1000

// incrementalRooms adds what changed in (since, pos] in the rooms the user
// was already joined to, reading all the rooms at once.
func (s *Store) incrementalRooms(ctx context.Context, req SyncRequest, rooms []string, since, pos SyncToken, resp *SyncResponse) error {
	jrs := map[string]*JoinedRoom{}
	for _, r := range rooms {
		jrs[r] = emptyRoom()
	}
	// Nothing at all committed in a stream since the token: nothing to
	// read in it (an idle long-poll woken by typing reads no table).
	if since.Events < pos.Events {
		if err := s.incrementalEvents(ctx, req, rooms, jrs, since, pos); err != nil {
			return err
		}
	}
	if err := s.ephemeral(ctx, req.UserID, jrs, since, pos); err != nil {
		return err
	}
	if err := s.roomAccountData(ctx, req.UserID, jrs, since, pos); err != nil {
		return err
	}
	for _, r := range rooms {
		jr := jrs[r]
		if len(jr.Timeline.Events) == 0 && len(jr.State.Events) == 0 && len(jr.Ephemeral.Events) == 0 && len(jr.AccountData.Events) == 0 {
			continue
		}
		if jr.Timeline.Events == nil {
			jr.Timeline = Timeline{Events: []ClientEvent{}, PrevBatch: Token(pos.Events)}
		}
		if err := s.finishRoom(ctx, req.UserID, r, jr, pos, membersChanged(jr)); err != nil {
			return err
		}
		resp.Rooms.Join[r] = jr
	}
	return nil
}

// incrementalEvents reads the timelines and state changes of the rooms.
func (s *Store) incrementalEvents(ctx context.Context, req SyncRequest, rooms []string, jrs map[string]*JoinedRoom, since, pos SyncToken) error {
	args := []any{since.Events, pos.Events, false}
	for _, r := range rooms {
		args = append(args, r)
	}
	rows, err := s.DB.QueryContext(ctx, s.q(`SELECT `+eventColumns+` FROM events AS e WHERE e.stream_ordering > ? AND e.stream_ordering <= ?
		AND e.outlier = ? AND e.room_id IN (`+marks(len(rooms))+`) ORDER BY e.stream_ordering DESC LIMIT `+itoa(incrementalCap+1)), args...)
	if err != nil {
		return err
	}
	events, err := scanEvents(rows)
	if err != nil {
		return err
	}
	byRoom := map[string][]ClientEvent{}
	for _, ev := range events {
		byRoom[ev.RoomID] = append(byRoom[ev.RoomID], ev)
	}
	for _, r := range rooms {
		if len(events) > incrementalCap {
			tl, err := s.timeline(ctx, r, since.Events, pos.Events, req.TimelineLimit)
			if err != nil {
				return err
			}
			jrs[r].Timeline = tl
			continue
		}
		jrs[r].Timeline = makeTimeline(byRoom[r], req.TimelineLimit, pos.Events)
	}
	state, err := s.currentState(ctx, rooms, since.Events, pos.Events)
	if err != nil {
		return err
	}
	stateByRoom := map[string][]ClientEvent{}
	for _, ev := range state {
		stateByRoom[ev.RoomID] = append(stateByRoom[ev.RoomID], ev)
	}
	for r, jr := range jrs {
		jr.State.Events = stateFor(req, stateByRoom[r], jr.Timeline)
	}
	return nil
}

func itoa(n int) string { return Token(int64(n))[1:] }

func roomArgs(first []any, jrs map[string]*JoinedRoom) ([]any, string) {
	rooms := make([]string, 0, len(jrs))
	for r := range jrs {
		rooms = append(rooms, r)
	}
	sort.Strings(rooms)
	for _, r := range rooms {
		first = append(first, r)
	}
	return first, marks(len(rooms))
}

// ephemeral adds typing (changed after since.Typing; since.Typing 0: anyone
// typing) and the receipts in (since, pos] to the rooms.
func (s *Store) ephemeral(ctx context.Context, userID string, jrs map[string]*JoinedRoom, since, pos SyncToken) error {
	for r, jr := range jrs {
		if users, changed := s.typingIn(r, since.Typing); changed {
			jr.Ephemeral.Events = append(jr.Ephemeral.Events, map[string]any{"type": "m.typing", "content": map[string]any{"user_ids": nonNil(users)}})
		}
	}
	if since.Receipts >= pos.Receipts {
		return nil
	}
	args, in := roomArgs([]any{since.Receipts, pos.Receipts}, jrs)
	rows, err := s.DB.QueryContext(ctx, s.q(`SELECT room_id, receipt_type, user_id, event_id, data, thread_id FROM receipts_linearized
		WHERE stream_id > ? AND stream_id <= ? AND room_id IN (`+in+`) ORDER BY stream_id`), args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	content := map[string]map[string]map[string]map[string]any{}
	for rows.Next() {
		var room, typ, user, event, data string
		var thread sql.NullString
		if err := rows.Scan(&room, &typ, &user, &event, &data, &thread); err != nil {
			return err
		}
		if typ == "m.read.private" && user != userID {
			continue
		}
		d := map[string]any{}
		_ = json.Unmarshal([]byte(data), &d)
		if thread.Valid {
			d["thread_id"] = thread.String
		}
		c := content[room]
		if c == nil {
			c = map[string]map[string]map[string]any{}
			content[room] = c
		}
		if c[event] == nil {
			c[event] = map[string]map[string]any{}
		}
		if c[event][typ] == nil {
			c[event][typ] = map[string]any{}
		}
		c[event][typ][user] = d
	}
	if err := rows.Err(); err != nil {
		return err
	}
	for room, c := range content {
		jrs[room].Ephemeral.Events = append(jrs[room].Ephemeral.Events, map[string]any{"type": "m.receipt", "content": c})
	}
	return nil
}

// roomAccountData adds the room account data and tags changed in (since,
// pos] to the rooms.
func (s *Store) roomAccountData(ctx context.Context, userID string, jrs map[string]*JoinedRoom, since, pos SyncToken) error {
	if since.AccountData >= pos.AccountData {
		return nil
	}
	rows, err := s.DB.QueryContext(ctx, s.q(`SELECT room_id, account_data_type, content FROM room_account_data
		WHERE user_id = ? AND stream_id > ? AND stream_id <= ? ORDER BY stream_id`), userID, since.AccountData, pos.AccountData)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var room, typ, content string
		if err := rows.Scan(&room, &typ, &content); err != nil {
			return err
		}
		if jr := jrs[room]; jr != nil {
			jr.AccountData.Events = append(jr.AccountData.Events, map[string]any{"type": typ, "content": json.RawMessage(content)})
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	rows.Close()
	rows, err = s.DB.QueryContext(ctx, s.q(`SELECT room_id FROM room_tags_revisions WHERE user_id = ? AND stream_id > ? AND stream_id <= ?`),
		userID, since.AccountData, pos.AccountData)
	if err != nil {
		return err
	}
	var tagged []string
	for rows.Next() {
		var room string
		if err := rows.Scan(&room); err != nil {
			rows.Close()
			return err
		}
		if jrs[room] != nil {
			tagged = append(tagged, room)
		}
	}
	rows.Close()
	for _, room := range tagged {
		tags, err := s.Tags(ctx, userID, room)
		if err != nil {
			return err
		}
		jrs[room].AccountData.Events = append(jrs[room].AccountData.Events, map[string]any{"type": "m.tag", "content": map[string]any{"tags": tags}})
	}
	return nil
}

// membersChanged reports whether the room's timeline or state holds a
// membership: its summary may have changed.
func membersChanged(jr *JoinedRoom) bool {
	for _, ev := range jr.Timeline.Events {
		if ev.Type == "m.room.member" {
			return true
		}
	}
	for _, ev := range jr.State.Events {
		if ev.(ClientEvent).Type == "m.room.member" {
			return true
		}
	}
	return false
}

// finishRoom adds the unread counts (the messages from others after the
// user's read receipt, or since they first joined) and, with summary, the
// room's summary (member counts and heroes).
func (s *Store) finishRoom(ctx context.Context, userID, room string, jr *JoinedRoom, pos SyncToken, summary bool) error {
	n, err := s.unreadCount(ctx, userID, room, pos.Events)
	jr.Unread.NotificationCount = n
	if err != nil || !summary {
		return err
	}
	rows, err := s.DB.QueryContext(ctx, s.q(`SELECT state_key, membership FROM current_state_events
		WHERE room_id = ? AND type = 'm.room.member' AND membership IN ('join', 'invite') ORDER BY state_key`), room)
	if err != nil {
		return err
	}
	defer rows.Close()
	joined, invited, heroes := 0, 0, []string{}
	for rows.Next() {
		var user, m string
		if err := rows.Scan(&user, &m); err != nil {
			return err
		}
		if m == "join" {
			joined++
		} else {
			invited++
		}
		if user != userID && len(heroes) < 5 {
			heroes = append(heroes, user)
		}
	}
	jr.Summary = map[string]any{"m.joined_member_count": joined, "m.invited_member_count": invited, "m.heroes": heroes}
	return rows.Err()
}

// unreadCount counts the messages from others in a room after the user's
// read receipt (or, without one, since they first joined) up to pos. A
// count is remembered per user and room, so that the next sync counts only
// the events after the last one counted, as long as the receipt has not
// moved.
func (s *Store) unreadCount(ctx context.Context, userID, room string, pos int64) (int64, error) {
	var from int64
	if err := s.DB.QueryRowContext(ctx, s.q(`SELECT COALESCE(
			(SELECT MAX(r.stream_ordering) FROM receipts_linearized AS rl JOIN events AS r ON r.event_id = rl.event_id
				WHERE rl.room_id = ? AND rl.user_id = ? AND rl.receipt_type IN ('m.read', 'm.read.private')),
			(SELECT MIN(j.stream_ordering) FROM room_memberships AS rm JOIN events AS j ON j.event_id = rm.event_id
				WHERE rm.room_id = ? AND rm.user_id = ? AND rm.membership = 'join'), 0)`), room, userID, room, userID).Scan(&from); err != nil {
		return 0, err
	}
	key := [2]string{userID, room}
	s.unreadMu.Lock()
	c, ok := s.unread[key]
	s.unreadMu.Unlock()
	start, n := from, int64(0)
	if ok && c.from == from && c.upTo <= pos {
		start, n = c.upTo, c.count
	}
	var more int64
	if err := s.DB.QueryRowContext(ctx, s.q(`SELECT count(*) FROM events AS e WHERE e.room_id = ? AND e.stream_ordering > ? AND e.stream_ordering <= ?
		AND e.sender <> ? AND e.type IN ('m.room.message', 'm.room.encrypted') AND e.outlier = ?`), room, start, pos, userID, false).Scan(&more); err != nil {
		return 0, err
	}
	n += more
	s.unreadMu.Lock()
	if len(s.unread) > unreadCacheSize {
		clear(s.unread)
	}
	s.unread[key] = unreadCache{from: from, upTo: pos, count: n}
	s.unreadMu.Unlock()
	return n, nil
}

// unreadCacheSize bounds the remembered counts (about 100 bytes each).
const unreadCacheSize = 100_000

type unreadCache struct{ from, upTo, count int64 }

// strippedTypes are the state events an invitation shows (Synapse's
// room_prejoin_state defaults).
var strippedTypes = []string{"m.room.create", "m.room.join_rules", "m.room.name", "m.room.topic", "m.room.avatar", "m.room.canonical_alias", "m.room.encryption"}

// inviteState is the stripped state of a room the user is invited to, with
// the invitation.
func (s *Store) inviteState(ctx context.Context, room, userID string) ([]any, error) {
	args := []any{room}
	for _, t := range strippedTypes {
		args = append(args, t)
	}
	args = append(args, userID)
	rows, err := s.DB.QueryContext(ctx, s.q(`SELECT `+eventColumns+` FROM current_state_events AS c JOIN events AS e ON e.event_id = c.event_id
		WHERE c.room_id = ? AND ((c.state_key = '' AND c.type IN (`+marks(len(strippedTypes))+`)) OR (c.type = 'm.room.member' AND c.state_key = ?))
		ORDER BY e.stream_ordering`), args...)
	if err != nil {
		return nil, err
	}
	events, err := scanEvents(rows)
	if err != nil {
		return nil, err
	}
	out := []any{}
	for _, ev := range events {
		out = append(out, map[string]any{"type": ev.Type, "state_key": *ev.StateKey, "content": ev.Content, "sender": ev.Sender})
	}
	return out, nil
}

// leftRoom is a room the user left (or was banned from) since the token:
// the timeline up to the leave, when they were joined before, else the
// leave alone.
func (s *Store) leftRoom(ctx context.Context, req SyncRequest, m membershipRow, since SyncToken) (*LeftRoom, error) {
	prev, err := s.membershipAt(ctx, req.UserID, m.room, since.Events)
	if err != nil {
		return nil, err
	}
	from := m.pos - 1
	if prev == "join" {
		from = since.Events
	}
	tl, err := s.timeline(ctx, m.room, from, m.pos, req.TimelineLimit)
	if err != nil {
		return nil, err
	}
	return &LeftRoom{Timeline: tl, State: Events{Events: []any{}}, AccountData: Events{Events: []any{}}}, nil
}
