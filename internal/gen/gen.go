// Package gen fills an engine database (schema 83) with a realistic
// homeserver's data, fast, directly in the database: users with profiles,
// devices, tokens, filters and account data; rooms created with their
// initial state and joined by members (state events in state groups stored
// as deltas with edges, current state, memberships); messages with their
// JSON, edges to the previous event, search rows, thread replies and
// reactions; receipts; and a few backfilled events with negative stream
// orderings. The shapes are those the engine's client API writes.
package gen

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math/rand"
	"regexp"
	"strings"

	"hsops/internal/catalog"
	"hsops/internal/db"
	"hsops/internal/sequences"
	"hsops/internal/store"
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
	// Older, when set, writes into a database at an older schema version:
	// columns and tables that version does not have are left out (and the
	// rows are those a server at that version would have written).
	Older bool
}

// Stats says what was written.
type Stats struct {
	Users, Rooms, Events, StateGroups, SearchRows int
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
	tx    *sql.Tx
	stmts map[string]*sql.Stmt
	next  int64 // next stream ordering
	back  int64 // next backfill stream ordering (negative)
	group int64 // next state group
	ts    int64
	stats Stats
	inTx  int
	// keep are, for statements rewritten for an older schema, the indexes
	// of the arguments kept; skip are the statements of missing tables.
	keep map[string][]int
	skip map[string]bool
}

var words = strings.Fields(`the quick brown fox jumps over lazy dog matrix homeserver synapse room message hello world
meeting tomorrow lunch deploy release upgrade database postgres sqlite migration running coffee weekend project
review merge branch test passing failing network server federation encrypted thread reply reaction photo`)

// Generate writes the data. The database must be an engine database with
// no rooms or events yet, at schema 83 (or older, with Params.Older).
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
	g := &gen{ctx: ctx, d: d, p: p, rnd: rand.New(rand.NewSource(p.Seed)), next: 1, back: -1, group: 1, ts: 1_700_000_000_000,
		keep: map[string][]int{}, skip: map[string]bool{}}
	if err := g.start(); err != nil {
		return g.stats, err
	}
	if err := g.users(); err != nil {
		return g.stats, err
	}
	rooms := make([]*room, p.Rooms)
	for i := range rooms {
		r, err := g.room(i)
		if err != nil {
			return g.stats, err
		}
		rooms[i] = r
	}
	for i := 0; i < p.Messages; i++ {
		r := rooms[i%len(rooms)]
		if err := g.message(r, i); err != nil {
			return g.stats, err
		}
	}
	for _, r := range rooms {
		for b := 0; b < p.Backfilled; b++ {
			if err := g.backfill(r, b); err != nil {
				return g.stats, err
			}
		}
		if err := g.finishRoom(r); err != nil {
			return g.stats, err
		}
	}
	if err := g.exec("stream", `INSERT INTO stream_positions (stream_name, instance_name, stream_id) VALUES (?, 'master', ?)`, "events", g.next-1); err != nil {
		return g.stats, err
	}
	if err := g.commit(); err != nil {
		return g.stats, err
	}
	// The rows bypassed PostgreSQL's sequences: move them past what is in
	// use, or the homeserver would hand out taken IDs.
	_, err := sequences.Advance(ctx, d)
	return g.stats, err
}

func (g *gen) start() error {
	tx, err := g.d.BeginTx(g.ctx, nil)
	if err != nil {
		return err
	}
	g.tx = tx
	g.stmts = map[string]*sql.Stmt{}
	return nil
}

func (g *gen) commit() error {
	if g.tx == nil {
		return nil
	}
	err := g.tx.Commit()
	g.tx = nil
	if err == nil && g.p.Progress != nil {
		g.p.Progress(g.stats.Events)
	}
	return err
}

// tick commits every TxSize events.
func (g *gen) tick() error {
	g.inTx++
	if g.inTx < g.p.TxSize {
		return nil
	}
	g.inTx = 0
	if err := g.commit(); err != nil {
		return err
	}
	return g.start()
}

func (g *gen) exec(name, q string, args ...any) error {
	if g.skip[name] {
		return nil
	}
	st, ok := g.stmts[name]
	if !ok {
		if g.p.Older {
			var err error
			if q, err = g.forOlder(name, q); err != nil {
				return err
			}
			if g.skip[name] {
				return nil
			}
		}
		var err error
		st, err = g.tx.PrepareContext(g.ctx, g.d.Rebind(q))
		if err != nil {
			return fmt.Errorf("prepare %s: %w", name, err)
		}
		g.stmts[name] = st
	}
	if keep, ok := g.keep[name]; ok {
		kept := make([]any, 0, len(keep))
		for _, i := range keep {
			kept = append(kept, args[i])
		}
		args = kept
	}
	if _, err := st.ExecContext(g.ctx, args...); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

var insertRE = regexp.MustCompile(`(?s)^\s*INSERT INTO (\w+) \(([^)]*)\)\s*VALUES \((.*?)\)(\s*ON CONFLICT.*)?$`)

// forOlder rewrites an INSERT for the database's schema: the columns its
// table does not have are left out with their values (g.keep records which
// arguments remain), and the statement is skipped when the table itself is
// missing.
func (g *gen) forOlder(name, q string) (string, error) {
	m := insertRE.FindStringSubmatch(q)
	if m == nil {
		return q, nil
	}
	table := m[1]
	ok, err := g.d.TableExists(g.ctx, g.tx, table)
	if err != nil {
		return "", err
	}
	if !ok {
		g.skip[name] = true
		return "", nil
	}
	have, err := g.d.Columns(g.ctx, g.tx, table)
	if err != nil {
		return "", err
	}
	exists := map[string]bool{}
	for _, c := range have {
		exists[c] = true
	}
	cols := strings.Split(m[2], ",")
	vals := catalog.SplitTopLevel(m[3])
	if len(cols) != len(vals) {
		return q, nil
	}
	var outCols, outVals []string
	var keep []int
	arg := 0
	for i, c := range cols {
		c = strings.TrimSpace(c)
		n := strings.Count(vals[i], "?")
		if exists[c] {
			outCols = append(outCols, c)
			outVals = append(outVals, vals[i])
			for k := 0; k < n; k++ {
				keep = append(keep, arg+k)
			}
		}
		arg += n
	}
	if len(outCols) == len(cols) {
		return q, nil
	}
	g.keep[name] = keep
	return "INSERT INTO " + table + " (" + strings.Join(outCols, ", ") + ") VALUES (" + strings.Join(outVals, ", ") + ")" + m[4], nil
}

// boolInt is a boolean for a SMALLINT column (users.admin).
func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (g *gen) user(i int) string { return fmt.Sprintf("@user%d:%s", i, g.p.ServerName) }

func (g *gen) users() error {
	for i := 0; i < g.p.Users; i++ {
		u := g.user(i)
		local := fmt.Sprintf("user%d", i)
		steps := []struct {
			name, q string
			args    []any
		}{
			{"user", "INSERT INTO users (name, password_hash, creation_ts, admin, is_guest, deactivated, approved, locked) VALUES (?, ?, ?, ?, 0, 0, ?, ?)",
				[]any{u, "$2b$04$abcdefghijklmnopqrstuuOpQ0q3Jx0hYhCmK0Ac6Tt4u1w0z2zGe", g.ts / 1000, boolInt(i == 0), true, false}},
			{"profile", "INSERT INTO profiles (user_id, full_user_id, displayname) VALUES (?, ?, ?)", []any{local, u, "User " + fmt.Sprint(i)}},
			{"device", "INSERT INTO devices (user_id, device_id, display_name, last_seen, hidden) VALUES (?, ?, ?, ?, ?)", []any{u, "DEV" + fmt.Sprint(i), "phone", g.ts, false}},
			{"token", "INSERT INTO access_tokens (id, user_id, device_id, token, used) VALUES (?, ?, ?, ?, ?)", []any{i + 1, u, "DEV" + fmt.Sprint(i), "syt_gen_" + fmt.Sprint(i), false}},
			{"filter", "INSERT INTO user_filters (user_id, full_user_id, filter_id, filter_json) VALUES (?, ?, 0, ?)", []any{local, u, []byte(`{"room":{"timeline":{"limit":20}}}`)}},
			{"account_data", "INSERT INTO account_data (user_id, account_data_type, stream_id, content, instance_name) VALUES (?, 'm.push_rules', ?, ?, 'master')", []any{u, i + 2, `{"global":{}}`}},
		}
		for _, s := range steps {
			if err := g.exec(s.name, s.q, s.args...); err != nil {
				return err
			}
		}
		g.stats.Users++
	}
	return nil
}

// event writes one event and what goes with it.
func (g *gen) event(r *room, typ, sender string, stateKey *string, content map[string]any, backfilled bool) (string, error) {
	id := "$" + store.RandomToken(32)
	g.ts += int64(g.rnd.Intn(5000) + 1)
	var so, depth int64
	var prev []string
	if backfilled {
		so = g.back
		g.back--
		depth = 0
	} else {
		so = g.next
		g.next++
		r.depth++
		depth = r.depth
		if r.last != "" {
			prev = []string{r.last}
		}
	}
	var auth []string
	for _, a := range []string{r.create, r.power, r.memberEvent[sender]} {
		if a != "" {
			auth = append(auth, a)
		}
	}
	ev := &store.Event{EventID: id, RoomID: r.id, Type: typ, Sender: sender, StateKey: stateKey, Content: content,
		Depth: depth, OriginServerTS: g.ts, PrevEvents: prev, AuthEvents: auth}
	body, _ := json.Marshal(content)
	var sk any
	if stateKey != nil {
		sk = *stateKey
	}
	if err := g.exec("event", `INSERT INTO events (stream_ordering, topological_ordering, event_id, type, room_id, content, processed, outlier,
		depth, origin_server_ts, received_ts, sender, contains_url, instance_name, state_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		so, depth, id, typ, r.id, string(body), true, false, depth, g.ts, g.ts, sender, false, "master", sk); err != nil {
		return "", err
	}
	if err := g.exec("event_json", "INSERT INTO event_json (event_id, room_id, internal_metadata, json, format_version) VALUES (?, ?, '{}', ?, 3)", id, r.id, ev.JSON()); err != nil {
		return "", err
	}
	for _, p := range prev {
		if err := g.exec("edge", "INSERT INTO event_edges (event_id, prev_event_id, room_id, is_state) VALUES (?, ?, ?, ?)", id, p, r.id, false); err != nil {
			return "", err
		}
	}
	for _, a := range auth {
		if err := g.exec("auth", "INSERT INTO event_auth (event_id, auth_id, room_id) VALUES (?, ?, ?)", id, a, r.id); err != nil {
			return "", err
		}
	}
	if stateKey != nil && !backfilled {
		if err := g.state(r, id, typ, *stateKey, sender, content, so); err != nil {
			return "", err
		}
	}
	if r.group != 0 && !backfilled {
		if err := g.exec("event_group", "INSERT INTO event_to_state_groups (event_id, state_group) VALUES (?, ?)", id, r.group); err != nil {
			return "", err
		}
	}
	if k, ok := map[string][2]string{"m.room.message": {"content.body", "body"}, "m.room.name": {"content.name", "name"}, "m.room.topic": {"content.topic", "topic"}}[typ]; ok {
		if v, _ := content[k[1]].(string); v != "" {
			var err error
			if g.d.Engine == db.Postgres {
				err = g.exec("search", "INSERT INTO event_search (event_id, room_id, sender, key, vector, origin_server_ts, stream_ordering) VALUES (?, ?, ?, ?, to_tsvector('english', ?), ?, ?)", id, r.id, sender, k[0], v, g.ts, so)
			} else {
				err = g.exec("search", "INSERT INTO event_search (event_id, room_id, sender, key, value) VALUES (?, ?, ?, ?, ?)", id, r.id, sender, k[0], v)
			}
			if err != nil {
				return "", err
			}
			g.stats.SearchRows++
		}
	}
	if !backfilled {
		r.last = id
	}
	g.stats.Events++
	return id, g.tick()
}

// state stores a state event: a new state group holding the delta, an
// edge to the room's previous group, the current state and memberships.
func (g *gen) state(r *room, id, typ, key, sender string, content map[string]any, so int64) error {
	gid := g.group
	g.group++
	steps := []struct {
		name, q string
		args    []any
	}{
		{"state_event", "INSERT INTO state_events (event_id, room_id, type, state_key) VALUES (?, ?, ?, ?)", []any{id, r.id, typ, key}},
		{"group", "INSERT INTO state_groups (id, room_id, event_id) VALUES (?, ?, ?)", []any{gid, r.id, id}},
		{"group_state", "INSERT INTO state_groups_state (state_group, room_id, type, state_key, event_id) VALUES (?, ?, ?, ?, ?)", []any{gid, r.id, typ, key, id}},
	}
	if r.group != 0 {
		steps = append(steps, struct {
			name, q string
			args    []any
		}{"group_edge", "INSERT INTO state_group_edges (state_group, prev_state_group) VALUES (?, ?)", []any{gid, r.group}})
	}
	var membership any
	if typ == "m.room.member" {
		membership = content["membership"]
	}
	steps = append(steps,
		struct {
			name, q string
			args    []any
		}{"current_delete", "DELETE FROM current_state_events WHERE room_id = ? AND type = ? AND state_key = ?", []any{r.id, typ, key}},
		struct {
			name, q string
			args    []any
		}{"current", "INSERT INTO current_state_events (event_id, room_id, type, state_key, membership, event_stream_ordering) VALUES (?, ?, ?, ?, ?, ?)", []any{id, r.id, typ, key, membership, so}})
	if typ == "m.room.member" {
		steps = append(steps,
			struct {
				name, q string
				args    []any
			}{"membership", "INSERT INTO room_memberships (event_id, user_id, sender, room_id, membership, display_name, event_stream_ordering) VALUES (?, ?, ?, ?, ?, ?, ?)", []any{id, key, sender, r.id, membership, content["displayname"], so}},
			struct {
				name, q string
				args    []any
			}{"local_delete", "DELETE FROM local_current_membership WHERE user_id = ? AND room_id = ?", []any{key, r.id}},
			struct {
				name, q string
				args    []any
			}{"local", "INSERT INTO local_current_membership (room_id, user_id, event_id, membership, event_stream_ordering) VALUES (?, ?, ?, ?, ?)", []any{r.id, key, id, membership, so}})
	}
	for _, s := range steps {
		if err := g.exec(s.name, s.q, s.args...); err != nil {
			return err
		}
	}
	r.group = gid
	g.stats.StateGroups++
	return nil
}

func (g *gen) room(i int) (*room, error) {
	r := &room{id: fmt.Sprintf("!room%d:%s", i, g.p.ServerName), memberEvent: map[string]string{}}
	creator := g.user(i % g.p.Users)
	if err := g.exec("room", "INSERT INTO rooms (room_id, is_public, creator, room_version, has_auth_chain_index) VALUES (?, ?, ?, '10', ?)", r.id, i%2 == 0, creator, false); err != nil {
		return nil, err
	}
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
	id, err := g.event(r, typ, sender, nil, content, false)
	if err != nil {
		return err
	}
	if rel, ok := content["m.relates_to"].(map[string]any); ok {
		var key any
		if k, ok := rel["key"].(string); ok {
			key = k
		}
		if err := g.exec("relation", "INSERT INTO event_relations (event_id, relates_to_id, relation_type, aggregation_key) VALUES (?, ?, ?, ?)", id, rel["event_id"], rel["rel_type"], key); err != nil {
			return err
		}
		if rel["rel_type"] == "m.thread" {
			if err := g.exec("thread", `INSERT INTO threads (room_id, thread_id, latest_event_id, topological_ordering, stream_ordering)
				VALUES (?, ?, ?, ?, ?) ON CONFLICT (room_id, thread_id) DO UPDATE SET latest_event_id = excluded.latest_event_id,
				topological_ordering = excluded.topological_ordering, stream_ordering = excluded.stream_ordering`, r.id, rel["event_id"], id, r.depth, g.next-1); err != nil {
				return err
			}
		}
	}
	return nil
}

func (g *gen) backfill(r *room, b int) error {
	_, err := g.event(r, "m.room.message", r.members[0], nil, map[string]any{"msgtype": "m.text", "body": "older history " + g.sentence()}, true)
	return err
}

// finishRoom records the room's forward extremity, depth and receipts.
func (g *gen) finishRoom(r *room) error {
	if err := g.exec("extremity", "INSERT INTO event_forward_extremities (event_id, room_id) VALUES (?, ?)", r.last, r.id); err != nil {
		return err
	}
	if err := g.exec("depth", "INSERT INTO room_depth (room_id, min_depth) VALUES (?, 1)", r.id); err != nil {
		return err
	}
	for i, u := range r.members {
		if err := g.exec("receipt", `INSERT INTO receipts_linearized (stream_id, room_id, receipt_type, user_id, event_id, data, instance_name)
			VALUES (?, ?, 'm.read', ?, ?, ?, 'master')`, g.stats.Events*10+i, r.id, u, r.last, `{"ts":`+fmt.Sprint(g.ts)+`}`); err != nil {
			return err
		}
	}
	return nil
}
