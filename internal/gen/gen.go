// Package gen fills an engine database with a realistic homeserver's data,
// fast: users with profiles, devices, tokens, filters and account data;
// rooms created with their initial state and joined by members (state
// events in state groups stored as deltas with edges, current state,
// memberships); messages with their JSON, edges to the previous event,
// search rows, thread replies and reactions; receipts; and a few
// backfilled events with negative stream orderings.
//
// The rows are the engine's own: gen decides what happens (who sends what
// where, and the stream orderings and state groups, kept in memory since
// it owns the empty database) and writes through the store's batched
// persistence (store.Batch), which writes an event exactly as the client
// API's Persist does, for the database's schema version: a database at an
// older version gets the rows a server at that version would have written.
package gen

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand"
	"strings"

	"hsops/internal/config"
	"hsops/internal/db"
	"hsops/internal/fault"
	"hsops/internal/sequences"
	"hsops/internal/store"
	"hsops/schema"
	"hsops/schema/engine"
)

// Params size the data.
type Params struct {
	ServerName string
	Users      int
	Rooms      int
	// Messages is the total number of messages, spread over the rooms.
	Messages int
	// MembersPerRoom is how many users join each room (at most Users).
	MembersPerRoom int
	// Backfilled is the number of backfilled events per room.
	Backfilled int
	Seed       int64
	// TxSize is the number of events per transaction.
	TxSize int
	// Progress is called after each transaction with the events so far.
	Progress func(events int)
}

// Stats says what was written.
type Stats struct {
	Users, Rooms, Events, StateGroups, SearchRows int
	// Rows is the number of rows written, in every table.
	Rows int
	// SchemaVersion is the schema version of the database written.
	SchemaVersion int
}

type room struct {
	id          string
	last        string
	depth       int64
	group       int64
	create      string
	power       string
	members     []string
	memberEvent map[string]string
}

type gen struct {
	ctx   context.Context
	d     *db.DB
	p     Params
	rnd   *rand.Rand
	b     *store.Batch
	tx    *sql.Tx
	inTx  int   // events written in tx
	next  int64 // next stream ordering
	back  int64 // next backfill stream ordering (negative)
	group int64 // next state group
	ts    int64
	stats Stats
}

var words = strings.Fields(`the quick brown fox jumps over lazy dog matrix homeserver synapse room message hello world
meeting tomorrow lunch deploy release upgrade database postgres sqlite migration running coffee weekend project
review merge branch test passing failing network server federation encrypted thread reply reaction photo`)

// ErrNotEmpty means the database to fill already holds events.
var ErrNotEmpty = fault.New(fault.Failed, "the database already has events", "generate into a new, empty database")

// SchemaVersions are the oldest and newest schema versions gen writes.
func SchemaVersions() (oldest, newest int) { return store.OldestVersion, engine.Schema().Version }

// Fill opens the database of a homeserver config (creating a SQLite file),
// refuses one that already holds events before writing anything, creates
// or upgrades the engine's schema to version (0: the newest) and generates
// the data into it.
func Fill(ctx context.Context, dbc config.Database, version int, p Params) (Stats, error) {
	d, err := db.Open(ctx, dbc, db.Options{Create: true, AppName: "hsops hsload"})
	if err != nil {
		return Stats{}, err
	}
	defer d.Close()
	if ok, err := d.TableExists(ctx, d, "events"); err != nil {
		return Stats{}, err
	} else if ok {
		var n int
		if err := d.QueryRowContext(ctx, "SELECT count(*) FROM events").Scan(&n); err != nil {
			return Stats{}, err
		}
		if n > 0 {
			return Stats{}, fmt.Errorf("%w (%d): nothing was written", ErrNotEmpty, n)
		}
	}
	if _, err := engine.Schema().Apply(ctx, d, schema.Options{Target: version, ServerName: p.ServerName, AllowUnsafeLocale: dbc.AllowUnsafeLocale, Holder: "hsload generate"}); err != nil {
		return Stats{}, err
	}
	return Generate(ctx, d, p)
}

// Generate writes the data. The database must be an engine database with
// no rooms or events yet, at any schema version the store writes.
func Generate(ctx context.Context, d *db.DB, p Params) (Stats, error) {
	if p.ServerName == "" {
		p.ServerName = "example.org"
	}
	if p.TxSize == 0 {
		p.TxSize = 5000
	}
	if p.MembersPerRoom == 0 || p.MembersPerRoom > p.Users {
		p.MembersPerRoom = min(p.Users, 10)
	}
	if p.Users < 1 || p.Rooms < 1 {
		return Stats{}, fmt.Errorf("generate needs at least one user and one room")
	}
	st, err := schema.ReadState(ctx, d, d)
	if err != nil {
		return Stats{}, err
	}
	if !st.HasVersion {
		return Stats{}, fmt.Errorf("the database has no schema: create it first")
	}
	b, err := store.New(d, p.ServerName, "master").NewBatch(st.Version)
	if err != nil {
		return Stats{}, err
	}
	if d.Engine == db.SQLite {
		restore, err := bulkPragmas(ctx, d)
		if err != nil {
			return Stats{}, err
		}
		defer restore()
	}
	g := &gen{ctx: ctx, d: d, p: p, rnd: rand.New(rand.NewSource(p.Seed)), b: b, next: 1, back: -1, group: 1, ts: 1_700_000_000_000}
	g.stats.SchemaVersion = st.Version
	if err := g.run(); err != nil {
		return g.stats, err
	}
	// The rows bypassed PostgreSQL's sequences: move them past what is in
	// use, or the homeserver would hand out taken IDs.
	_, err = sequences.Advance(ctx, d)
	return g.stats, err
}

// bulkPragmas tune SQLite's (only) connection for transactions of
// thousands of events, and return what sets them back. Such a transaction
// outgrows the default page cache (2 MB): the indexes on random event IDs
// take inserts all over, and a spilled cache rewrites pages mid-transaction
// (128 MB makes a 100,000-message run about twice as fast). Its multi-row
// INSERTs outgrow the statement journal's memory, which would spill to a
// temporary file.
func bulkPragmas(ctx context.Context, d *db.DB) (func(), error) {
	var cache, temp int64
	if err := d.QueryRowContext(ctx, "PRAGMA cache_size").Scan(&cache); err != nil {
		return nil, err
	}
	if err := d.QueryRowContext(ctx, "PRAGMA temp_store").Scan(&temp); err != nil {
		return nil, err
	}
	set := func(cache, temp int64) error {
		if _, err := d.ExecContext(context.WithoutCancel(ctx), fmt.Sprintf("PRAGMA cache_size = %d", cache)); err != nil {
			return err
		}
		_, err := d.ExecContext(context.WithoutCancel(ctx), fmt.Sprintf("PRAGMA temp_store = %d", temp))
		return err
	}
	if err := set(-131072, 2); err != nil {
		return nil, err
	}
	return func() { _ = set(cache, temp) }, nil
}

func (g *gen) run() error {
	g.users()
	rooms := make([]*room, g.p.Rooms)
	for i := range rooms {
		r, err := g.room(i)
		if err != nil {
			return err
		}
		rooms[i] = r
	}
	for i := 0; i < g.p.Messages; i++ {
		if err := g.message(rooms[i%len(rooms)], i); err != nil {
			return err
		}
	}
	for _, r := range rooms {
		for b := 0; b < g.p.Backfilled; b++ {
			if err := g.backfill(r); err != nil {
				return err
			}
		}
		g.finishRoom(r)
	}
	g.b.AddStreamPosition("events", g.next-1)
	return g.write(true)
}

// batchEvents is how many events the batch holds before they are written
// to the open transaction: enough for large statements, few enough to keep
// the memory small.
const batchEvents = 2000

// write writes what the batch holds into the open transaction (begun
// when none is), and commits it when commit is set or it holds TxSize
// events.
func (g *gen) write(commit bool) error {
	if g.tx == nil {
		tx, err := g.d.BeginTx(g.ctx, nil)
		if err != nil {
			return err
		}
		g.tx = tx
	}
	g.inTx += g.b.Events()
	n, err := g.b.Flush(g.ctx, g.tx)
	if err != nil {
		_ = g.tx.Rollback()
		g.tx = nil
		return err
	}
	g.stats.Rows += n
	if !commit && g.inTx < g.p.TxSize {
		return nil
	}
	err = g.tx.Commit()
	g.tx, g.inTx = nil, 0
	if err != nil {
		return err
	}
	if g.p.Progress != nil {
		g.p.Progress(g.stats.Events)
	}
	return nil
}

func (g *gen) user(i int) string { return fmt.Sprintf("@user%d:%s", i, g.p.ServerName) }

func (g *gen) users() {
	for i := 0; i < g.p.Users; i++ {
		u := g.user(i)
		g.b.AddAccount(store.Account{UserID: u, PasswordHash: "$2b$04$abcdefghijklmnopqrstuuOpQ0q3Jx0hYhCmK0Ac6Tt4u1w0z2zGe",
			CreationTS: g.ts / 1000, Admin: i == 0, DisplayName: "User " + fmt.Sprint(i), DeviceID: "DEV" + fmt.Sprint(i),
			DeviceName: "phone", LastSeen: g.ts, TokenID: int64(i + 1), Token: "syt_gen_" + fmt.Sprint(i)})
		g.b.AddFilter(u, 0, []byte(`{"room":{"timeline":{"limit":20}}}`))
		g.b.AddAccountData(u, "m.push_rules", int64(i+2), `{"global":{}}`)
		g.stats.Users++
	}
}

// event adds one event: its stream ordering, depth, prev event, auth
// events and state group come from the room as gen keeps it.
func (g *gen) event(r *room, typ, sender string, stateKey *string, content map[string]any, backfilled bool) (string, error) {
	e := &store.Event{EventID: "$" + store.RandomToken(32), RoomID: r.id, Type: typ, Sender: sender, StateKey: stateKey,
		Content: content, Backfilled: backfilled}
	g.ts += int64(g.rnd.Intn(5000) + 1)
	e.OriginServerTS = g.ts
	if backfilled {
		e.StreamOrdering = g.back
		g.back--
	} else {
		e.StreamOrdering = g.next
		g.next++
		r.depth++
		e.Depth = r.depth
		if r.last != "" {
			e.PrevEvents = []string{r.last}
		}
		e.StateGroup = r.group
		if stateKey != nil {
			e.PrevStateGroup = r.group
			e.StateGroup = g.group
			g.group++
			r.group = e.StateGroup
			g.stats.StateGroups++
		}
		r.last = e.EventID
	}
	for _, a := range []string{r.create, r.power, r.memberEvent[sender]} {
		if a != "" {
			e.AuthEvents = append(e.AuthEvents, a)
		}
	}
	if err := g.b.Add(e); err != nil {
		return "", err
	}
	if store.Searchable(typ, content) {
		g.stats.SearchRows++
	}
	g.stats.Events++
	if g.b.Events() >= min(batchEvents, g.p.TxSize) {
		return e.EventID, g.write(false)
	}
	return e.EventID, nil
}

func (g *gen) room(i int) (*room, error) {
	r := &room{id: fmt.Sprintf("!room%d:%s", i, g.p.ServerName), memberEvent: map[string]string{}}
	creator := g.user(i % g.p.Users)
	g.b.AddRoom(r.id, creator, i%2 == 0)
	var err error
	empty := ""
	if r.create, err = g.event(r, "m.room.create", creator, &empty, map[string]any{"creator": creator, "room_version": "10"}, false); err != nil {
		return nil, err
	}
	if err := g.join(r, creator); err != nil {
		return nil, err
	}
	if r.power, err = g.event(r, "m.room.power_levels", creator, &empty, map[string]any{"users": map[string]int{creator: 100}, "users_default": 0}, false); err != nil {
		return nil, err
	}
	for _, st := range []struct {
		typ     string
		content map[string]any
	}{
		{"m.room.join_rules", map[string]any{"join_rule": "public"}},
		{"m.room.history_visibility", map[string]any{"history_visibility": "shared"}},
		{"m.room.name", map[string]any{"name": fmt.Sprintf("Room %d about %s", i, words[i%len(words)])}},
		{"m.room.topic", map[string]any{"topic": "talk about " + words[(i*7)%len(words)]}},
	} {
		if _, err := g.event(r, st.typ, creator, &empty, st.content, false); err != nil {
			return nil, err
		}
	}
	for m := 1; m < g.p.MembersPerRoom; m++ {
		if err := g.join(r, g.user((i+m)%g.p.Users)); err != nil {
			return nil, err
		}
	}
	g.stats.Rooms++
	return r, nil
}

func (g *gen) join(r *room, user string) error {
	id, err := g.event(r, "m.room.member", user, &user, map[string]any{"membership": "join", "displayname": strings.TrimPrefix(strings.Split(user, ":")[0], "@")}, false)
	if err != nil {
		return err
	}
	r.members = append(r.members, user)
	r.memberEvent[user] = id
	return nil
}

func (g *gen) sentence() string {
	n := 4 + g.rnd.Intn(16)
	w := make([]string, n)
	for i := range w {
		w[i] = words[g.rnd.Intn(len(words))]
	}
	return strings.Join(w, " ")
}

// message sends a message: every 20th a thread reply to the room's last
// event, every 50th a reaction to it.
func (g *gen) message(r *room, i int) error {
	sender := r.members[g.rnd.Intn(len(r.members))]
	content := map[string]any{"msgtype": "m.text", "body": g.sentence()}
	typ := "m.room.message"
	switch {
	case i%50 == 49 && r.last != "":
		typ = "m.reaction"
		content = map[string]any{"m.relates_to": map[string]any{"rel_type": "m.annotation", "event_id": r.last, "key": "👍"}}
	case i%20 == 19 && r.last != "":
		content["m.relates_to"] = map[string]any{"rel_type": "m.thread", "event_id": r.last}
	}
	_, err := g.event(r, typ, sender, nil, content, false)
	return err
}

func (g *gen) backfill(r *room) error {
	_, err := g.event(r, "m.room.message", r.members[0], nil, map[string]any{"msgtype": "m.text", "body": "older history " + g.sentence()}, true)
	return err
}

// finishRoom records the room's depth and its members' receipts.
func (g *gen) finishRoom(r *room) {
	g.b.AddRoomDepth(r.id, 1)
	for i, u := range r.members {
		g.b.AddReceipt(store.Receipt{StreamID: int64(g.stats.Events*10 + i), RoomID: r.id, Type: "m.read", UserID: u, EventID: r.last,
			Data: `{"ts":` + fmt.Sprint(g.ts) + `}`})
	}
}
