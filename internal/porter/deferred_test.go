package porter

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"hsops/internal/catalog"
	"hsops/internal/config"
	"hsops/internal/db"
	"hsops/internal/gen"
	"hsops/internal/pgtest"
	"hsops/internal/portstate"
	"hsops/schema"
	"hsops/schema/engine"
)

// portTables is the port's own bookkeeping, the only tables a port adds.
var portTables = []string{"port_from_sqlite3", "hsops_port", "hsops_port_tables", "hsops_port_deferred"}

func dumpCatalog(t *testing.T, d *db.DB) *catalog.Catalog {
	t.Helper()
	c, err := catalog.Dump(context.Background(), d, catalog.Options{Exclude: portTables})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func assertSameCatalog(t *testing.T, what string, want, got *catalog.Catalog) {
	t.Helper()
	if diff := catalog.Diff(want, got); len(diff) > 0 {
		t.Fatalf("%s: the catalog differs (- before, + after):\n%s", what, strings.Join(diff, "\n"))
	}
}

// freshEngineCatalog is the catalog of a new engine database at schema 83.
func freshEngineCatalog(t *testing.T) *catalog.Catalog {
	t.Helper()
	ref := openPG(t, pgtest.NewDatabase(t).Config)
	if _, err := engine.Schema().Apply(context.Background(), ref, schema.Options{ServerName: "example.org"}); err != nil {
		t.Fatal(err)
	}
	return dumpCatalog(t, ref)
}

// TestPort_CatalogUnchanged_EngineSchema: a port into an empty target, and
// a second run over it, drop indexes and keys for the copy and end with
// exactly the catalog of a new engine database: tables, columns, indexes
// with their definitions, constraints (validated or not), sequences,
// triggers, functions.
func TestPort_CatalogUnchanged_EngineSchema(t *testing.T) {
	src := engineSource(t, gen.Params{Users: 20, Rooms: 4, Messages: 800, Backfilled: 3, Seed: 21})
	tgt := pgtest.NewDatabase(t)
	want := freshEngineCatalog(t)
	d := openPG(t, tgt.Config)
	for run := 1; run <= 2; run++ {
		res := mustPort(t, src, tgt.Config)
		assertExact(t, res)
		if res.Rebuilt == 0 {
			t.Fatalf("run %d rebuilt nothing: no index or key was dropped for the copy", run)
		}
		assertSameCatalog(t, "engine schema", want, dumpCatalog(t, d))
		if n := count(t, d, "SELECT count(*) FROM hsops_port_deferred"); n != 0 {
			t.Errorf("run %d: %d records of dropped objects left", run, n)
		}
		if err := portstate.Check(context.Background(), d); err != nil {
			t.Errorf("run %d: a finished port is refused: %v", run, err)
		}
	}
}

// synapseShapedTarget prepares a schema as Synapse would (the engine's,
// without its mark), with the kinds of index and constraint a real
// deployment may carry on top: partial, expression, descending and
// INCLUDE indexes, storage parameters, a deferrable unique constraint, a
// foreign key added NOT VALID (it must stay so), a unique index referenced
// by a foreign key, a comment and a statistics target (kept in place).
func synapseShapedTarget(t *testing.T, cfg config.Database) *db.DB {
	t.Helper()
	d := openPG(t, cfg)
	if _, err := engine.Schema().Apply(context.Background(), d, schema.Options{}); err != nil {
		t.Fatal(err)
	}
	for _, stmt := range []string{
		"DROP TABLE hsops_engine",
		"CREATE INDEX events_sender_recent ON events (sender, stream_ordering DESC NULLS LAST) WHERE NOT outlier",
		"CREATE INDEX event_json_room_lower ON event_json (lower(room_id)) WITH (fillfactor = 70)",
		"CREATE INDEX users_name_incl ON users (name) INCLUDE (creation_ts)",
		"ALTER TABLE event_to_state_groups ADD CONSTRAINT event_to_state_groups_pair UNIQUE (event_id, state_group) DEFERRABLE INITIALLY DEFERRED",
		"ALTER TABLE event_auth ADD CONSTRAINT event_auth_event_fk FOREIGN KEY (event_id) REFERENCES events (event_id) ON DELETE CASCADE NOT VALID",
		"CREATE UNIQUE INDEX state_groups_id_room ON state_groups (id, room_id)",
		"ALTER TABLE event_to_state_groups ADD CONSTRAINT event_to_state_groups_group_fk FOREIGN KEY (state_group) REFERENCES state_groups (id)",
		"CREATE INDEX event_edges_room ON event_edges (room_id)",
		"COMMENT ON INDEX event_edges_room IS 'kept in place'",
		"CREATE INDEX event_json_lower_event ON event_json (lower(event_id))",
		"ALTER INDEX event_json_lower_event ALTER COLUMN 1 SET STATISTICS 300",
	} {
		if _, err := d.Exec(stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	return d
}

// synapseShapedSource is an engine source without its mark: a "Synapse"
// database for the porter.
func synapseShapedSource(t *testing.T, p gen.Params) string {
	t.Helper()
	src := engineSource(t, p)
	s := openSQLite(t, src)
	if _, err := s.Exec("DROP TABLE hsops_engine"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	return src
}

func TestPort_CatalogUnchanged_SynapseShapedSchema(t *testing.T) {
	src := synapseShapedSource(t, gen.Params{Users: 12, Rooms: 3, Messages: 600, Backfilled: 2, Seed: 22})
	tgt := pgtest.NewDatabase(t)
	d := synapseShapedTarget(t, tgt.Config)
	want := dumpCatalog(t, d)
	for run := 1; run <= 2; run++ {
		res := mustPort(t, src, tgt.Config)
		assertExact(t, res)
		if res.Rebuilt == 0 {
			t.Fatalf("run %d rebuilt nothing", run)
		}
		assertSameCatalog(t, "Synapse-shaped schema", want, dumpCatalog(t, d))
	}
	// What could not be restored exactly was left in place, not dropped.
	var def string
	if err := d.QueryRow("SELECT obj_description('event_edges_room'::regclass, 'pg_class')").Scan(&def); err != nil || def != "kept in place" {
		t.Errorf("the commented index: %q, %v", def, err)
	}
}

// TestPort_InterruptedRebuildResumes stops a port in the middle of its
// index rebuilds: the target then has indexes and keys missing, recorded in
// hsops_port_deferred, and is refused as a port in progress; the same port
// run again puts everything back and the catalog is as it began.
func TestPort_InterruptedRebuildResumes(t *testing.T) {
	for _, shape := range []string{"engine", "synapse"} {
		t.Run(shape, func(t *testing.T) {
			ctx := context.Background()
			p := gen.Params{Users: 12, Rooms: 3, Messages: 600, Backfilled: 2, Seed: 23}
			tgt := pgtest.NewDatabase(t)
			var src string
			var want *catalog.Catalog
			d := openPG(t, tgt.Config)
			if shape == "engine" {
				src = engineSource(t, p)
				want = freshEngineCatalog(t)
			} else {
				src = synapseShapedSource(t, p)
				synapseShapedTarget(t, tgt.Config)
				want = dumpCatalog(t, d)
			}
			seen := map[string]bool{}
			for _, stopAt := range []int{1, 7, 20} {
				cctx, cancel := context.WithCancel(ctx)
				rebuilt := 0
				_, err := Run(cctx, Options{SQLitePath: src, Target: tgt.Config, ServerName: "example.org", Jobs: 2, BatchSize: 200, deferMin: 1,
					Progress: func(ev Event) {
						if ev.Type == "rebuilt" {
							seen[ev.Message] = true
							if rebuilt++; rebuilt == stopAt {
								cancel()
							}
						}
					}})
				cancel()
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("stopped after %d rebuilds: got %v, want the cancellation", stopAt, err)
				}
				// What is still recorded as dropped was dropped: a rebuild
				// that committed as the cancellation landed reports no
				// "rebuilt" event.
				recorded, err := readDeferred(ctx, d)
				if err != nil {
					t.Fatal(err)
				}
				for _, o := range recorded {
					seen[o.String()] = true
				}
				if n := count(t, d, "SELECT count(*) FROM hsops_port_deferred"); n == 0 {
					t.Fatalf("stopped after %d rebuilds: nothing recorded as dropped", stopAt)
				}
				if len(catalog.Diff(want, dumpCatalog(t, d))) == 0 {
					t.Fatalf("stopped after %d rebuilds: the catalog is complete already", stopAt)
				}
				if err := portstate.Check(ctx, d); !errors.Is(err, portstate.ErrInProgress) {
					t.Fatalf("stopped after %d rebuilds: CheckNotPorting gave %v", stopAt, err)
				}
				dry, err := Run(ctx, Options{SQLitePath: src, Target: tgt.Config, ServerName: "example.org", DryRun: true})
				if err != nil || !strings.Contains(dry.InProgress, "not rebuilt yet") {
					t.Fatalf("dry run: %v, in progress %q", err, dry.InProgress)
				}
			}
			res := mustPort(t, src, tgt.Config, func(o *Options) {
				o.Progress = func(ev Event) {
					if ev.Type == "rebuilt" {
						seen[ev.Message] = true
					}
				}
			})
			assertExact(t, res)
			assertSameCatalog(t, shape, want, dumpCatalog(t, d))
			wantRebuilt := []string{"index events_order_room", "unique events_event_id_key", "foreign key room_memberships_event_stream_ordering_fkey",
				"foreign key event_forward_extremities_event_id", "index event_search_fts_idx"}
			if shape == "synapse" {
				wantRebuilt = append(wantRebuilt, "index events_sender_recent", "index event_json_room_lower", "index users_name_incl",
					"unique event_to_state_groups_pair", "foreign key event_auth_event_fk", "index state_groups_id_room", "foreign key event_to_state_groups_group_fk")
			}
			for _, name := range wantRebuilt {
				if !seen[name] {
					t.Errorf("%s was never dropped (dropped or rebuilt: %v)", name, seen)
				}
			}
			if seen["index event_edges_room"] || seen["index event_json_lower_event"] {
				t.Error("an index with a comment or a statistics target was dropped")
			}
			if err := portstate.Check(ctx, d); err != nil {
				t.Fatalf("after the port finished: %v", err)
			}
		})
	}
}

// TestPort_ResumeKeepsTheCopyOrder: a port stopped when events is copied
// but its indexes are not back yet. Its foreign keys are dropped (recorded
// only in hsops_port_deferred), yet the next run still copies the tables
// that reference events after events' indexes are back: the membership
// tables' triggers look events up by event_id for every row they receive.
func TestPort_ResumeKeepsTheCopyOrder(t *testing.T) {
	ctx := context.Background()
	src := engineSource(t, gen.Params{Users: 12, Rooms: 3, Messages: 600, Seed: 24})
	tgt := pgtest.NewDatabase(t)
	cctx, cancel := context.WithCancel(ctx)
	_, err := Run(cctx, Options{SQLitePath: src, Target: tgt.Config, ServerName: "example.org", Jobs: 2, BatchSize: 200, deferMin: 1,
		Progress: func(ev Event) {
			if ev.Type == "table_done" && ev.Table == "events" {
				cancel()
			}
		}})
	cancel()
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want the cancellation", err)
	}
	d := openPG(t, tgt.Config)
	if n := count(t, d, "SELECT count(*) FROM hsops_port_deferred WHERE table_name = 'events' AND kind <> 'foreign key'"); n == 0 {
		t.Fatal("events' indexes are back already: the test stopped too late")
	}
	var order []string
	mustPort(t, src, tgt.Config, func(o *Options) {
		o.Progress = func(ev Event) {
			switch {
			case ev.Type == "rebuilt" && ev.Table == "events":
				order = append(order, "events index")
			case ev.Type == "table" && (ev.Table == "room_memberships" || ev.Table == "current_state_events"):
				order = append(order, ev.Table)
			}
		}
	})
	last := -1
	for i, what := range order {
		if what == "events index" {
			last = i
		}
	}
	for i, what := range order {
		if what != "events index" && i < last {
			t.Fatalf("%s was copied before events' indexes were back: %v", what, order)
		}
	}
}

// noDeferral keeps every index and key in place through the copy.
func noDeferral(o *Options) { o.deferMin = math.MaxInt64 }

// sequenceValues are the target's sequences with their positions.
func sequenceValues(t *testing.T, d *db.DB) map[string]string {
	t.Helper()
	rows, err := d.Query(`SELECT sequencename, coalesce(last_value::text, 'unset') FROM pg_sequences WHERE schemaname = current_schema()`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var name, v string
		if err := rows.Scan(&name, &v); err != nil {
			t.Fatal(err)
		}
		out[name] = v
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestPort_DeferralChangesNothing ports the same source twice, once with
// every index and key dropped for the copy and rebuilt, once with none
// dropped: the two targets have the same catalog (indexes with their
// definitions, constraints and whether they are validated, sequences) and
// the same sequence positions, on the engine's schema, on a Synapse-shaped
// one, and with the real Synapse 1.98 database as the source.
func TestPort_DeferralChangesNothing(t *testing.T) {
	cases := []struct {
		name    string
		src     func(t *testing.T) string
		prepare func(t *testing.T, cfg config.Database, src string)
		server  string
	}{
		{"engine", func(t *testing.T) string {
			return engineSource(t, gen.Params{Users: 12, Rooms: 3, Messages: 500, Backfilled: 2, Seed: 25})
		}, nil, "example.org"},
		{"synapse-shaped", func(t *testing.T) string {
			return synapseShapedSource(t, gen.Params{Users: 12, Rooms: 3, Messages: 500, Backfilled: 2, Seed: 26})
		}, func(t *testing.T, cfg config.Database, _ string) { synapseShapedTarget(t, cfg) }, "example.org"},
		{"synapse-1.98-fixture", func(t *testing.T) string {
			data, err := os.ReadFile(fixturePath())
			if err != nil {
				t.Fatal(err)
			}
			src := filepath.Join(t.TempDir(), "homeserver.db")
			if err := os.WriteFile(src, data, 0o600); err != nil {
				t.Fatal(err)
			}
			return src
		}, fixtureShapedTarget, "localhost"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src := c.src(t)
			var cats [2]*catalog.Catalog
			var seqs [2]map[string]string
			for i, mutate := range []func(*Options){func(*Options) {}, noDeferral} {
				tgt := pgtest.NewDatabase(t)
				d := openPG(t, tgt.Config)
				var before *catalog.Catalog
				if c.prepare != nil {
					c.prepare(t, tgt.Config, src)
					before = dumpCatalog(t, d)
				}
				res := mustPort(t, src, tgt.Config, mutate, func(o *Options) { o.ServerName = c.server })
				assertExact(t, res)
				if deferred := i == 0; deferred != (res.Rebuilt > 0) {
					t.Fatalf("deferral %v: %d objects rebuilt", deferred, res.Rebuilt)
				} else if deferred {
					t.Logf("%d indexes and constraints dropped for the copy and rebuilt", res.Rebuilt)
				}
				cats[i], seqs[i] = dumpCatalog(t, d), sequenceValues(t, d)
				if before != nil {
					assertSameCatalog(t, "the prepared schema (-) against the ported one (+)", before, cats[i])
				}
			}
			assertSameCatalog(t, "deferred (-) against not deferred (+)", cats[0], cats[1])
			if !reflect.DeepEqual(seqs[0], seqs[1]) {
				t.Errorf("sequence positions differ:\ndeferred     %v\nnot deferred %v", seqs[0], seqs[1])
			}
			if len(seqs[0]) == 0 {
				t.Error("no sequences compared")
			}
		})
	}
}

// fixtureShapedTarget is the Synapse-shaped target (synapseShapedTarget)
// completed with the tables of the real Synapse database src that the
// engine's schema does not have, created with Synapse's own SQLite
// statements (tables, then their indexes), which PostgreSQL accepts as
// they are but for BLOB.
func fixtureShapedTarget(t *testing.T, cfg config.Database, src string) {
	t.Helper()
	d := synapseShapedTarget(t, cfg)
	tables, err := d.Tables(context.Background(), d)
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, name := range tables {
		have[name] = true
	}
	s := openSQLite(t, src)
	rows, err := s.Query(`SELECT type, tbl_name, sql FROM sqlite_master
		WHERE sql IS NOT NULL AND type IN ('table', 'index') AND tbl_name NOT LIKE 'sqlite_%'
		AND tbl_name NOT LIKE '%search%' ORDER BY type = 'index', name`)
	if err != nil {
		t.Fatal(err)
	}
	var stmts []string
	created := map[string]bool{}
	for rows.Next() {
		var typ, table, stmt string
		if err := rows.Scan(&typ, &table, &stmt); err != nil {
			t.Fatal(err)
		}
		if typ == "table" && !have[table] {
			created[table] = true
		}
		if created[table] {
			stmts = append(stmts, strings.ReplaceAll(stmt, "BLOB", "BYTEA"))
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	rows.Close()
	// Tables referencing others wait for them: passes until all are made.
	for len(stmts) > 0 {
		var later []string
		var last error
		for _, stmt := range stmts {
			if _, err := d.Exec(stmt); err != nil {
				later, last = append(later, stmt), fmt.Errorf("%s: %w", stmt, err)
			}
		}
		if len(later) == len(stmts) {
			t.Fatal(last)
		}
		stmts = later
	}
}
