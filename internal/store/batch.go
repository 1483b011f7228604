package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"hsops/internal/db"
)

// Batch is the store's batched persistence, the one writer of event rows:
// it collects the rows of events (everything Persist writes with an event)
// and of the accounts, rooms and receipts around them, and writes them
// table by table with multi-row statements, for a database at a given
// schema version. Persist writes each event as a batch of one; a generator
// that owns an empty database writes thousands at a time.
//
// Events are added resolved: their stream ordering, depth, prev events and
// state groups are set (Persist reads them from the database; a generator
// keeps them in memory). A batch reads nothing from the database, so it
// must be the only writer of the rooms it writes while it is filled.
type Batch struct {
	s       *Store
	version int
	plans   *[numTables]*plan
	rows    [numTables]pending
	// extremities are the forward extremities added in the batch, by
	// event ID; unextremities those of earlier events to delete.
	extremities   []extremity
	extremityAt   map[string]int
	unextremities []extremity
	events        int
	args          []any
}

// pending are the rows of one table waiting in a batch: every row has a
// value for each column of the table's spec, back to back.
type pending struct {
	vals []any
	n    int
	// at is, for a keyed table, the row of each key.
	at map[string]int
}

type extremity struct {
	event, room string
	gone        bool
}

// ErrSchemaVersion means a batch was asked for a schema version the store
// does not write.
var ErrSchemaVersion = errors.New("unsupported schema version")

// NewBatch starts a batch for a database at a schema version (0: the
// newest): tables and columns that version lacks are left out.
func (s *Store) NewBatch(version int) (*Batch, error) {
	if version != 0 && version < OldestVersion {
		return nil, fmt.Errorf("%w: %d is older than the oldest the store writes (%d)", ErrSchemaVersion, version, OldestVersion)
	}
	return &Batch{s: s, version: version, plans: plansFor(s.DB.Engine, version)}, nil
}

// Events is the number of events in the batch.
func (b *Batch) Events() int { return b.events }

func (b *Batch) add(t tableID, vals ...any) {
	p := &b.rows[t]
	if len(vals) != len(tables[t].cols) {
		panic(fmt.Sprintf("store: %d values for the %d columns of %s", len(vals), len(tables[t].cols), tables[t].name))
	}
	if tables[t].key != nil {
		var k strings.Builder
		for _, i := range tables[t].keyIndexes() {
			k.WriteString(fmt.Sprint(vals[i]))
			k.WriteByte(0)
		}
		if p.at == nil {
			p.at = map[string]int{}
		}
		if row, ok := p.at[k.String()]; ok {
			copy(p.vals[row*len(vals):], vals)
			return
		}
		p.at[k.String()] = p.n
	}
	p.vals = append(p.vals, vals...)
	p.n++
}

// Add adds an event with every row that goes with it: the event and its
// JSON, edges to its prev events, auth edges, the state group it belongs to
// (StateGroup; for a state event that is not backfilled, a new group
// holding only the event, with an edge to PrevStateGroup, as Synapse
// stores state deltas), the current state and memberships, the search row,
// relations and threads, redactions, forward extremities and the client
// transaction.
func (b *Batch) Add(e *Event) error {
	switch {
	case e.EventID == "" || e.RoomID == "":
		return fmt.Errorf("store: an event to add needs its ID and room")
	case e.StreamOrdering == 0 || (e.StreamOrdering < 0) != e.Backfilled:
		return fmt.Errorf("store: event %s has stream ordering %d (backfilled: %v)", e.EventID, e.StreamOrdering, e.Backfilled)
	case e.IsState() && !e.Backfilled && e.StateGroup == 0:
		return fmt.Errorf("store: state event %s has no state group", e.EventID)
	}
	var stateKey any
	if e.StateKey != nil {
		stateKey = *e.StateKey
	}
	content, err := json.Marshal(e.Content)
	if err != nil {
		return fmt.Errorf("store: content of %s: %w", e.EventID, err)
	}
	_, containsURL := e.Content["url"]
	b.add(tEvents, e.StreamOrdering, e.Depth, e.EventID, e.Type, e.RoomID, string(content), true, false, e.Depth,
		e.OriginServerTS, e.OriginServerTS, e.Sender, containsURL, b.s.Instance, stateKey)
	b.add(tEventJSON, e.EventID, e.RoomID, "{}", e.JSON(), 3)
	for _, prev := range e.PrevEvents {
		b.add(tEventEdges, e.EventID, prev, e.RoomID, false)
	}
	for _, a := range e.AuthEvents {
		b.add(tEventAuth, e.EventID, a, e.RoomID)
	}
	if e.IsState() && !e.Backfilled {
		b.state(e)
	}
	if e.StateGroup != 0 {
		b.add(tEventToStateGroups, e.EventID, e.StateGroup)
	}
	if key, value := searchEntry(e.Type, e.Content); value != "" {
		b.add(tEventSearch, e.EventID, e.RoomID, e.Sender, key, value, value, e.OriginServerTS, e.StreamOrdering)
	}
	b.relations(e)
	if !e.Backfilled {
		b.extremity(e)
	}
	if e.TxnID != "" && e.DeviceID != "" {
		b.add(tEventTxnID, e.EventID, e.RoomID, e.Sender, e.DeviceID, e.TxnID, e.OriginServerTS)
	}
	b.events++
	return nil
}

// state adds a state event's group (a delta on the previous group), its
// current state entry and, for a membership, the membership rows.
func (b *Batch) state(e *Event) {
	key := *e.StateKey
	b.add(tStateGroups, e.StateGroup, e.RoomID, e.EventID)
	b.add(tStateGroupsState, e.StateGroup, e.RoomID, e.Type, key, e.EventID)
	if e.PrevStateGroup != 0 {
		b.add(tStateGroupEdges, e.StateGroup, e.PrevStateGroup)
	}
	b.add(tStateEvents, e.EventID, e.RoomID, e.Type, key)
	var membership any
	if e.Type == "m.room.member" {
		m, _ := e.Content["membership"].(string)
		membership = m
	}
	b.add(tCurrentStateEvents, e.EventID, e.RoomID, e.Type, key, membership, e.StreamOrdering)
	if e.Type != "m.room.member" {
		return
	}
	display, _ := e.Content["displayname"].(string)
	avatar, _ := e.Content["avatar_url"].(string)
	b.add(tRoomMemberships, e.EventID, key, e.Sender, e.RoomID, membership, nullString(display), nullString(avatar), e.StreamOrdering)
	if strings.HasSuffix(key, ":"+b.s.ServerName) {
		b.add(tLocalCurrentMembership, e.RoomID, key, e.EventID, membership, e.StreamOrdering)
	}
}

// searchKeys are the content fields Synapse indexes, by event type.
var searchKeys = map[string][2]string{
	"m.room.message": {"content.body", "body"},
	"m.room.name":    {"content.name", "name"},
	"m.room.topic":   {"content.topic", "topic"},
}

// searchEntry is the key ("content.body") and text of an event's search
// row; the text is "" when the event has none.
func searchEntry(typ string, content map[string]any) (key, value string) {
	k, ok := searchKeys[typ]
	if !ok {
		return "", ""
	}
	value, _ = content[k[1]].(string)
	return k[0], value
}

// Searchable reports whether an event of this type and content gets a
// search row.
func Searchable(typ string, content map[string]any) bool {
	_, value := searchEntry(typ, content)
	return value != ""
}

// relations adds m.relates_to (threads, reactions, edits) and redactions.
func (b *Batch) relations(e *Event) {
	if e.Type == "m.room.redaction" {
		if redacts, _ := e.Content["redacts"].(string); redacts != "" {
			b.add(tRedactions, e.EventID, redacts, false, e.OriginServerTS)
		}
	}
	rel, _ := e.Content["m.relates_to"].(map[string]any)
	typ, _ := rel["rel_type"].(string)
	parent, _ := rel["event_id"].(string)
	if typ == "" || parent == "" {
		return
	}
	var key any
	if k, ok := rel["key"].(string); ok {
		key = k
	}
	b.add(tEventRelations, e.EventID, parent, typ, key)
	if typ == "m.thread" {
		b.add(tThreads, e.RoomID, parent, e.EventID, e.Depth, e.StreamOrdering)
	}
}

// extremity makes the event a forward extremity of its room in place of
// its prev events.
func (b *Batch) extremity(e *Event) {
	if b.extremityAt == nil {
		b.extremityAt = map[string]int{}
	}
	for _, prev := range e.PrevEvents {
		if i, ok := b.extremityAt[prev]; ok {
			b.extremities[i].gone = true
			delete(b.extremityAt, prev)
			continue
		}
		b.unextremities = append(b.unextremities, extremity{event: prev, room: e.RoomID})
	}
	b.extremityAt[e.EventID] = len(b.extremities)
	b.extremities = append(b.extremities, extremity{event: e.EventID, room: e.RoomID})
}

// Account is a user as registration and a first login leave it: the user
// and profile, a device and an access token.
type Account struct {
	UserID       string
	PasswordHash string
	// CreationTS is in seconds, as Synapse keeps it.
	CreationTS  int64
	Admin       bool
	DisplayName string
	DeviceID    string
	DeviceName  string
	// LastSeen is in milliseconds.
	LastSeen int64
	TokenID  int64
	Token    string
}

// AddAccount adds a local user with its profile, device and token.
func (b *Batch) AddAccount(a Account) {
	local, _ := b.s.Localpart(a.UserID)
	admin := 0
	if a.Admin {
		admin = 1
	}
	b.add(tUsers, a.UserID, nullString(a.PasswordHash), a.CreationTS, admin, 0, 0, true, false)
	b.add(tProfiles, local, a.UserID, nullString(a.DisplayName))
	b.add(tDevices, a.UserID, a.DeviceID, nullString(a.DeviceName), a.LastSeen, false)
	b.add(tAccessTokens, a.TokenID, a.UserID, a.DeviceID, a.Token, false)
}

// AddFilter adds a local user's filter.
func (b *Batch) AddFilter(userID string, filterID int64, filter []byte) {
	local, _ := b.s.Localpart(userID)
	b.add(tUserFilters, local, userID, filterID, filter)
}

// AddAccountData adds a user's global account data of a type.
func (b *Batch) AddAccountData(userID, typ string, streamID int64, content string) {
	b.add(tAccountData, userID, typ, streamID, content, b.s.Instance)
}

// AddRoom adds a room (room version 10, as the engine creates them). Its
// events follow with Add.
func (b *Batch) AddRoom(roomID, creator string, public bool) {
	b.add(tRooms, roomID, public, creator, "10", false)
}

// AddRoomDepth records the lowest depth of a room's events.
func (b *Batch) AddRoomDepth(roomID string, minDepth int64) {
	b.add(tRoomDepth, roomID, minDepth)
}

// Receipt is a user's receipt up to an event.
type Receipt struct {
	StreamID int64
	RoomID   string
	Type     string
	UserID   string
	EventID  string
	Data     string
}

// AddReceipt adds a receipt.
func (b *Batch) AddReceipt(r Receipt) {
	b.add(tReceipts, r.StreamID, r.RoomID, r.Type, r.UserID, r.EventID, r.Data, b.s.Instance)
}

// AddStreamPosition records how far this writer has written a stream.
func (b *Batch) AddStreamPosition(stream string, id int64) {
	b.add(tStreamPositions, stream, b.s.Instance, id)
}

// Flush writes the batch in tx and empties it (also when it fails: the
// caller rolls tx back). It returns the number of rows it added to the
// tables: the rows inserted less the forward extremities of earlier
// events it deleted (a row replaced by a key counts as one).
func (b *Batch) Flush(ctx context.Context, tx *sql.Tx) (int, error) {
	defer b.reset()
	written := 0
	for id := range tables {
		t := tableID(id)
		if t == tForwardExtremities {
			n, err := b.flushExtremities(ctx, tx)
			written += n
			if err != nil {
				return written, err
			}
			continue
		}
		p, r := b.plans[t], &b.rows[t]
		if r.n == 0 || p.skip {
			continue
		}
		if err := b.insert(ctx, tx, p, r.vals, r.n); err != nil {
			return written, err
		}
		written += r.n
	}
	return written, nil
}

// insert writes n rows of a table, maxRows per statement; the statement
// of a full chunk is prepared once.
func (b *Batch) insert(ctx context.Context, tx *sql.Tx, p *plan, vals []any, n int) error {
	width := len(p.spec.cols)
	var full *sql.Stmt
	defer func() {
		if full != nil {
			full.Close()
		}
	}()
	for start := 0; start < n; start += p.maxRows {
		rows := min(p.maxRows, n-start)
		args := b.args[:0]
		for r := start; r < start+rows; r++ {
			row := vals[r*width : (r+1)*width]
			for _, k := range p.keep {
				args = append(args, row[k])
			}
		}
		b.args = args
		var err error
		switch {
		case rows < p.maxRows || n < 2*p.maxRows:
			_, err = tx.ExecContext(ctx, p.insert(rows), args...)
		default:
			if full == nil {
				if full, err = tx.PrepareContext(ctx, p.insert(rows)); err != nil {
					return fmt.Errorf("insert into %s: %w", p.spec.name, err)
				}
			}
			_, err = full.ExecContext(ctx, args...)
		}
		if err != nil {
			return fmt.Errorf("insert into %s: %w", p.spec.name, err)
		}
	}
	return nil
}

// flushExtremities deletes the extremities the batch's events replaced and
// inserts the new ones; it returns the net number of rows added.
func (b *Batch) flushExtremities(ctx context.Context, tx *sql.Tx) (int, error) {
	deleted := 0
	if len(b.unextremities) > 0 {
		st, err := tx.PrepareContext(ctx, db.Rebind(b.s.DB.Engine, "DELETE FROM event_forward_extremities WHERE event_id = ? AND room_id = ?"))
		if err != nil {
			return 0, err
		}
		defer st.Close()
		for _, x := range b.unextremities {
			res, err := st.ExecContext(ctx, x.event, x.room)
			if err != nil {
				return 0, fmt.Errorf("delete forward extremity: %w", err)
			}
			if d, err := res.RowsAffected(); err == nil {
				deleted += int(d)
			}
		}
	}
	var vals []any
	n := 0
	for _, x := range b.extremities {
		if !x.gone {
			vals = append(vals, x.event, x.room)
			n++
		}
	}
	if n == 0 {
		return -deleted, nil
	}
	return n - deleted, b.insert(ctx, tx, b.plans[tForwardExtremities], vals, n)
}

func (b *Batch) reset() {
	for i := range b.rows {
		r := &b.rows[i]
		clear(r.vals)
		r.vals, r.n = r.vals[:0], 0
		clear(r.at)
	}
	clear(b.args)
	b.extremities, b.unextremities = b.extremities[:0], b.unextremities[:0]
	clear(b.extremityAt)
	b.events = 0
}
