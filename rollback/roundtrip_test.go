package rollback

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"hsops/internal/catalog"
	"hsops/internal/config"
	"hsops/internal/db"
	"hsops/internal/dbtest"
	"hsops/internal/pgtest"
	"hsops/internal/rowsum"
	"hsops/schema"
	"hsops/schema/engine"
)

func TestMain(m *testing.M) { pgtest.Main(withReferences{m}) }

// withReferences runs the tests, then removes the references they shared.
type withReferences struct{ m *testing.M }

func (w withReferences) Run() int {
	code := w.m.Run()
	shared.remove()
	return code
}

// create makes a fresh database at schema v the way the engine does: from
// the schema 68 snapshot plus deltas, or from the 83 snapshot.
func create(t *testing.T, e db.Engine, v int) *db.DB {
	t.Helper()
	d := dbtest.New(t, e).Open(t)
	if _, err := engine.Schema().Apply(context.Background(), d, schema.Options{Target: v}); err != nil {
		t.Fatalf("create at %d: %v", v, err)
	}
	return d
}

func upgrade(t *testing.T, d *db.DB, v int) {
	t.Helper()
	if _, err := engine.Schema().Apply(context.Background(), d, schema.Options{Target: v, ServerName: "example.org"}); err != nil {
		t.Fatalf("upgrade to %d: %v", v, err)
	}
}

func runUpdates(t *testing.T, d *db.DB) {
	t.Helper()
	r := &schema.Runner{DB: d, Registry: engine.Schema().Updates, Env: schema.Env{Engine: d.Engine, ServerName: "example.org"}}
	if err := r.RunAll(context.Background()); err != nil {
		t.Fatalf("run background updates: %v", err)
	}
}

func mustRollback(t *testing.T, d *db.DB, v int) *Result {
	t.Helper()
	res, err := Engine().Apply(context.Background(), d, Options{Target: v, AllowDataLoss: true, ServerName: "example.org"})
	if err != nil {
		t.Fatalf("roll back to %d: %v", v, err)
	}
	return res
}

// seed writes a small homeserver's rows into a database at schema v (68 or
// later), with the columns a server at v writes, and only rows every later
// schema keeps (no dangling edges or extremities, no receipts in threads).
func seed(t *testing.T, d *db.DB, v int) {
	t.Helper()
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := d.Exec(d.Rebind(q), args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	for i, u := range []string{"alice", "bob", "carol"} {
		exec("INSERT INTO users (name, password_hash, creation_ts, admin, is_guest, deactivated) VALUES (?, 'x', ?, 0, 0, 0)", "@"+u+":example.org", 1000+i)
		if v >= 76 {
			exec("INSERT INTO profiles (user_id, full_user_id, displayname) VALUES (?, ?, ?)", u, "@"+u+":example.org", strings.ToUpper(u))
			exec("INSERT INTO user_filters (user_id, full_user_id, filter_id, filter_json) VALUES (?, ?, 1, ?)", u, "@"+u+":example.org", []byte(`{"room":{}}`))
		} else {
			exec("INSERT INTO profiles (user_id, displayname) VALUES (?, ?)", u, strings.ToUpper(u))
			exec("INSERT INTO user_filters (user_id, filter_id, filter_json) VALUES (?, 1, ?)", u, []byte(`{"room":{}}`))
		}
		exec("INSERT INTO devices (user_id, device_id, display_name) VALUES (?, 'DEV', 'phone')", "@"+u+":example.org")
		exec("INSERT INTO access_tokens (id, user_id, device_id, token) VALUES (?, ?, 'DEV', ?)", i+1, "@"+u+":example.org", "tok-"+u)
	}
	exec("INSERT INTO rooms (room_id, is_public, creator, room_version) VALUES ('!r:example.org', ?, '@alice:example.org', '10')", true)
	for i := 1; i <= 8; i++ {
		id := fmt.Sprintf("$e%d", i)
		typ := "m.room.message"
		if i <= 3 {
			typ = "m.room.member"
		}
		sender := []string{"@alice:example.org", "@bob:example.org", "@carol:example.org"}[i%3]
		exec(`INSERT INTO events (stream_ordering, topological_ordering, event_id, type, room_id, processed, outlier, depth, origin_server_ts, sender)
			VALUES (?, ?, ?, ?, '!r:example.org', ?, ?, ?, ?, ?)`, i, i, id, typ, true, false, i, 1000+i, sender)
		exec("INSERT INTO event_json (event_id, room_id, internal_metadata, json, format_version) VALUES (?, '!r:example.org', '{}', ?, 3)", id, fmt.Sprintf(`{"n":%d}`, i))
		if i > 1 {
			exec("INSERT INTO event_edges (event_id, prev_event_id, room_id, is_state) VALUES (?, ?, '!r:example.org', ?)", id, fmt.Sprintf("$e%d", i-1), false)
		}
		if typ == "m.room.member" {
			exec("INSERT INTO state_events (event_id, room_id, type, state_key) VALUES (?, '!r:example.org', ?, ?)", id, typ, sender)
			exec("INSERT INTO room_memberships (event_id, user_id, sender, room_id, membership) VALUES (?, ?, ?, '!r:example.org', 'join')", id, sender, sender)
			exec("INSERT INTO current_state_events (event_id, room_id, type, state_key, membership) VALUES (?, '!r:example.org', 'm.room.member', ?, 'join')", id, sender)
			exec("INSERT INTO local_current_membership (room_id, user_id, event_id, membership) VALUES ('!r:example.org', ?, ?, 'join')", sender, id)
		} else if d.Engine == db.SQLite {
			exec("INSERT INTO event_search (event_id, room_id, sender, key, value) VALUES (?, '!r:example.org', ?, 'content.body', ?)", id, sender, fmt.Sprintf("running message %d", i))
		} else {
			exec("INSERT INTO event_search (event_id, room_id, sender, key, vector, origin_server_ts, stream_ordering) VALUES (?, '!r:example.org', ?, 'content.body', to_tsvector('english', ?), ?, ?)", id, sender, fmt.Sprintf("running message %d", i), 1000+i, i)
		}
	}
	if v >= 72 {
		exec("INSERT INTO event_push_actions (room_id, event_id, user_id, actions, topological_ordering, stream_ordering, notif, highlight, thread_id) VALUES ('!r:example.org', '$e5', '@bob:example.org', '[\"notify\"]', 5, 5, 1, 0, 'main')")
	} else {
		exec("INSERT INTO event_push_actions (room_id, event_id, user_id, actions, topological_ordering, stream_ordering, notif, highlight) VALUES ('!r:example.org', '$e5', '@bob:example.org', '[\"notify\"]', 5, 5, 1, 0)")
	}
	exec("INSERT INTO event_relations (event_id, relates_to_id, relation_type) VALUES ('$e6', '$e4', 'm.thread')")
	exec("INSERT INTO event_forward_extremities (event_id, room_id) VALUES ('$e8', '!r:example.org')")
	exec("INSERT INTO receipts_linearized (stream_id, room_id, receipt_type, user_id, event_id, data) VALUES (1, '!r:example.org', 'm.read', '@bob:example.org', '$e7', '{}')")
	exec("INSERT INTO receipts_graph (room_id, receipt_type, user_id, event_ids, data) VALUES ('!r:example.org', 'm.read', '@bob:example.org', '[\"$e7\"]', '{}')")
	for g := 1; g <= 4; g++ {
		exec("INSERT INTO state_groups (id, room_id, event_id) VALUES (?, '!r:example.org', ?)", g, fmt.Sprintf("$e%d", g))
		if g > 1 {
			exec("INSERT INTO state_group_edges (state_group, prev_state_group) VALUES (?, ?)", g, g-1)
		}
	}
}

// skipTables are bookkeeping, compared through ReadState instead.
var skipTables = map[string]bool{
	"hsops_engine": true, "schema_version": true, "schema_compat_version": true,
	"applied_schema_deltas": true, "background_updates": true,
}

// shape lists the tables of a database and their columns.
func shape(t *testing.T, d *db.DB) map[string][]rowsum.Column {
	t.Helper()
	ctx := context.Background()
	tables, err := d.Tables(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]rowsum.Column{}
	for _, tbl := range tables {
		if skipTables[tbl] || strings.HasPrefix(tbl, "event_search_") {
			continue
		}
		cols, err := rowsum.Columns(ctx, d, d, tbl)
		if err != nil {
			t.Fatal(err)
		}
		out[tbl] = cols
	}
	return out
}

// rows sums the rows of the tables and columns of a shape, leaving out the
// skipped columns ("table.column").
func rows(t *testing.T, d *db.DB, sh map[string][]rowsum.Column, skip map[string]bool) map[string]string {
	t.Helper()
	out := map[string]string{}
	for tbl, cols := range sh {
		var keep []rowsum.Column
		for _, c := range cols {
			if !skip[tbl+"."+c.Name] {
				keep = append(keep, c)
			}
		}
		sum, err := rowsum.Table(context.Background(), d, db.QuoteIdent(tbl), keep)
		if err != nil {
			t.Fatal(err)
		}
		out[tbl] = sum.String()
	}
	return out
}

func diffRows(want, got map[string]string) []string {
	var out []string
	for tbl, w := range want {
		if g := got[tbl]; g != w {
			out = append(out, fmt.Sprintf("%s: want %s, got %s", tbl, w, g))
		}
	}
	sort.Strings(out)
	return out
}

// reference is a fresh database at a version, seeded, with its background
// updates done: what a rollback to that version must look like.
type reference struct {
	version int
	d       *db.DB // SQLite only: a PostgreSQL reference is closed, to be a template
	pgName  string // PostgreSQL only: the database to clone
	state   *schema.State
	catalog *catalog.Catalog
	shape   map[string][]rowsum.Column

	readerOnce sync.Once
	reader     *db.DB // PostgreSQL only: a clone to read, made once
	readerErr  error
}

// clone returns a copy of the reference to change. A SQLite file is
// copied (much faster than building it again, which matters under the race
// detector, where the pure-Go SQLite is slow); a PostgreSQL database is
// cloned with CREATE DATABASE ... TEMPLATE.
func (r *reference) clone(t *testing.T) *db.DB {
	t.Helper()
	if r.pgName != "" {
		tg := dbtest.Target{Engine: db.Postgres, Config: pgtest.Clone(t, r.pgName).Config}
		return tg.Open(t)
	}
	path := filepath.Join(t.TempDir(), "homeserver.db")
	if _, err := r.d.Exec("VACUUM INTO ?", path); err != nil {
		t.Fatal(err)
	}
	d, err := db.OpenSQLite(context.Background(), path, db.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// read returns the reference itself to read from (SQLite), or a clone of
// it (a PostgreSQL template may have no session), made once for all the
// subtests that read it, like the references themselves.
func (r *reference) read(t *testing.T) *db.DB {
	t.Helper()
	if r.d != nil {
		return r.d
	}
	r.readerOnce.Do(func() {
		pg, err := pgtest.CloneDatabase(r.pgName)
		if err != nil {
			r.readerErr = err
			return
		}
		shared.dbMu.Lock()
		shared.pgNames = append(shared.pgNames, pg.Name)
		shared.dbMu.Unlock()
		if r.reader, r.readerErr = db.Open(context.Background(), pg.Config, db.Options{AppName: "hsops-test"}); r.readerErr == nil {
			shared.dbMu.Lock()
			shared.open = append(shared.open, r.reader)
			shared.dbMu.Unlock()
		}
	})
	if r.readerErr != nil {
		t.Fatal(r.readerErr)
	}
	return r.reader
}

// sharedReferences are the references of each engine, built once per test
// process by the first round-trip property that needs them and read by all
// three (never changed: each subtest changes a clone). They outlive the
// tests that built them: SQLite files in a directory of their own, and
// PostgreSQL databases that belong to no test, dropped by TestMain.
type sharedReferences struct {
	mu       sync.Mutex // held while an engine's references are built
	byEngine map[db.Engine]map[int]*reference

	dbMu    sync.Mutex // held by newDatabase
	dir     string
	open    []*db.DB
	pgNames []string
}

var shared sharedReferences

// references returns a reference for each version of need, before the
// parallel subtests that share them start. A version's reference is built
// once per engine, by the first call that needs it, in parallel subtests of
// their own ("references/V").
func references(t *testing.T, e db.Engine, need []int) map[int]*reference {
	t.Helper()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.byEngine == nil {
		shared.byEngine = map[db.Engine]map[int]*reference{}
	}
	refs := shared.byEngine[e]
	if refs == nil {
		refs = map[int]*reference{}
		shared.byEngine[e] = refs
	}
	var missing []int
	for _, v := range need {
		if _, ok := refs[v]; !ok && !slices.Contains(missing, v) {
			missing = append(missing, v)
		}
	}
	if len(missing) > 0 {
		set := engine.Schema()
		var mu sync.Mutex
		t.Run("references", func(t *testing.T) {
			for _, v := range missing {
				t.Run(fmt.Sprint(v), func(t *testing.T) {
					t.Parallel()
					ref := buildReference(t, set, e, v)
					mu.Lock()
					refs[v] = ref
					mu.Unlock()
				})
			}
		})
		if t.Failed() {
			t.FailNow()
		}
	}
	out := map[int]*reference{}
	for _, v := range need {
		out[v] = refs[v]
	}
	return out
}

// buildReference makes the reference at v: a fresh database at v, seeded,
// its background updates done.
func buildReference(t *testing.T, set *schema.Set, e db.Engine, v int) *reference {
	t.Helper()
	d, pgName := shared.newDatabase(t, e)
	if _, err := set.Apply(context.Background(), d, schema.Options{Target: v}); err != nil {
		t.Fatalf("create at %d: %v", v, err)
	}
	seed(t, d, v)
	runUpdates(t, d)
	st, err := schema.ReadState(context.Background(), d, d.DB)
	if err != nil {
		t.Fatal(err)
	}
	ref := &reference{version: v, d: d, state: st, catalog: dbtest.Dump(t, d), shape: shape(t, d)}
	if e == db.Postgres {
		// A template may have no session: the reference is read only
		// through what was taken from it above.
		d.Close()
		ref.d, ref.pgName = nil, pgName
	}
	return ref
}

// newDatabase is an empty database of the engine that no test's cleanup
// removes; with its PostgreSQL name.
func (s *sharedReferences) newDatabase(t *testing.T, e db.Engine) (*db.DB, string) {
	t.Helper()
	ctx := context.Background()
	opts := db.Options{Create: true, AppName: "hsops-test"}
	if e == db.Postgres {
		pgtest.AdminURL(t)
		pg, err := pgtest.Create("C")
		if err != nil {
			t.Fatal(err)
		}
		s.dbMu.Lock()
		s.pgNames = append(s.pgNames, pg.Name)
		s.dbMu.Unlock()
		d, err := db.Open(ctx, pg.Config, opts)
		if err != nil {
			t.Fatal(err)
		}
		return d, pg.Name
	}
	s.dbMu.Lock()
	defer s.dbMu.Unlock()
	if s.dir == "" {
		dir, err := os.MkdirTemp("", "hsops-rollback-references-")
		if err != nil {
			t.Fatal(err)
		}
		s.dir = dir
	}
	// As dbtest.New's, in a directory of its own.
	path := filepath.Join(s.dir, fmt.Sprintf("reference-%d.db", len(s.open)))
	d, err := db.Open(ctx, config.Database{
		Label: "master", Name: config.EngineSQLite, Args: map[string]string{"database": path},
		DataStores: []string{"main", "state"}, SynchronousCommit: true,
	}, opts)
	if err != nil {
		t.Fatal(err)
	}
	s.open = append(s.open, d)
	return d, ""
}

// remove closes and removes the references.
func (s *sharedReferences) remove() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dbMu.Lock()
	defer s.dbMu.Unlock()
	for _, d := range s.open {
		d.Close()
	}
	if s.dir != "" {
		os.RemoveAll(s.dir)
	}
	for _, name := range s.pgNames {
		_ = pgtest.DropDatabase(name)
	}
	s.dir, s.byEngine, s.open, s.pgNames = "", nil, nil, nil
}

// checkState checks the bookkeeping of a database rolled back to v: that of
// the reference (a fresh database at v, created from the 68 snapshot), or,
// for a database created from the 83 snapshot, that of one created at v.
func checkState(t *testing.T, d *db.DB, ref *reference, fromSnapshot bool) {
	t.Helper()
	ctx := context.Background()
	st, err := schema.ReadState(ctx, d, d.DB)
	if err != nil {
		t.Fatal(err)
	}
	want := ref.state
	if st.Kind != schema.KindEngine || st.Version != want.Version || st.Compat != want.Compat || len(st.Updates) != 0 {
		t.Fatalf("got kind %v version %d compat %d updates %v, want engine %d/%d with nothing pending", st.Kind, st.Version, st.Compat, st.Updates, want.Version, want.Compat)
	}
	if fromSnapshot {
		if st.Upgraded || st.Mark.CreatedVersion != ref.version || len(st.Applied) != 0 {
			t.Errorf("got upgraded %v created %d applied %v, want a database that counts as created at %d", st.Upgraded, st.Mark.CreatedVersion, st.Applied, ref.version)
		}
		return
	}
	if st.Upgraded != want.Upgraded || st.Mark.CreatedVersion != want.Mark.CreatedVersion || !slices.Equal(st.Applied, want.Applied) {
		t.Errorf("got upgraded %v created %d applied %v, want %v %d %v", st.Upgraded, st.Mark.CreatedVersion, st.Applied, want.Upgraded, want.Mark.CreatedVersion, want.Applied)
	}
}
