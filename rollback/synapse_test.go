package rollback

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/Masterminds/semver/v3"

	"hsops/internal/db"
	"hsops/internal/dbtest"
	"hsops/schema"
)

// synapse126 builds by hand a Synapse database as v1.26.0 leaves it (schema
// 59, no compat version), with the tables the v1.25.0 recipe touches and one
// it must not.
func synapse126(t *testing.T, e db.Engine) *db.DB {
	t.Helper()
	d := dbtest.New(t, e).Open(t)
	boolean := "BOOLEAN"
	for _, q := range []string{
		"CREATE TABLE schema_version (Lock CHAR(1) NOT NULL DEFAULT 'X' UNIQUE, version INTEGER NOT NULL, upgraded " + boolean + " NOT NULL, CHECK (Lock='X'))",
		"CREATE TABLE applied_schema_deltas (version INTEGER NOT NULL, file TEXT NOT NULL, UNIQUE(version, file))",
		"INSERT INTO schema_version (version, upgraded) VALUES (59, TRUE)",
		"INSERT INTO applied_schema_deltas (version, file) VALUES (58, '58/28rejected_events_metadata.sql'), (59, '59/01ignored_user.py'), (59, '59/04_event_auth_chains.sql'), (59, '59/06chain_cover_index.sql')",
		"CREATE TABLE rooms (room_id TEXT NOT NULL PRIMARY KEY, creator TEXT, has_auth_chain_index " + boolean + ")",
		"INSERT INTO rooms VALUES ('!a:example.org', '@u:example.org', TRUE), ('!b:example.org', '@u:example.org', FALSE)",
		"CREATE TABLE event_auth_chains (event_id TEXT PRIMARY KEY, chain_id BIGINT NOT NULL, sequence_number BIGINT NOT NULL)",
		"INSERT INTO event_auth_chains VALUES ('$1', 1, 1), ('$2', 1, 2)",
		"CREATE TABLE event_auth_chain_links (origin_chain_id BIGINT NOT NULL, origin_sequence_number BIGINT NOT NULL, target_chain_id BIGINT NOT NULL, target_sequence_number BIGINT NOT NULL)",
		"INSERT INTO event_auth_chain_links VALUES (1, 2, 1, 1)",
		"CREATE TABLE ignored_users (ignorer_user_id TEXT NOT NULL, ignored_user_id TEXT NOT NULL)",
		"INSERT INTO ignored_users VALUES ('@u:example.org', '@spam:example.org')",
		"CREATE TABLE users (name TEXT, password_hash TEXT)",
		"INSERT INTO users VALUES ('@u:example.org', 'x')",
	} {
		if _, err := d.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	return d
}

func TestRecipe_v126ToV125(t *testing.T) {
	dbtest.Engines(t, func(t *testing.T, e db.Engine) {
		ctx := context.Background()
		d := synapse126(t, e)
		st := mustState(t, d)
		if st.Kind != schema.KindSynapse || st.Version != 59 {
			t.Fatalf("hand-built database reads as %v at %d", st.Kind, st.Version)
		}
		if _, err := Engine().Plan(ctx, d, d, st, Options{Target: 58}); !errors.Is(err, schema.ErrNotEngine) {
			t.Fatalf("engine plan on a Synapse database: %v", err)
		}
		p, err := PlanSynapse(st, e, semver.MustParse("1.25.0"))
		if err != nil {
			t.Fatal(err)
		}
		if p.AsIs || len(p.Recipes) != 1 || p.Recipes[0].Name != "v1.26.0 to v1.25.0" {
			t.Fatalf("plan %+v", p)
		}
		var stmts []string
		for _, step := range p.Recipes[0].Steps {
			stmts = append(stmts, step.Statements(e)...)
		}
		wantStmts := []string{
			"UPDATE schema_version SET version = 58;",
			"DROP TABLE IF EXISTS ignored_users;",
			"UPDATE rooms SET has_auth_chain_index = false;",
		}
		if e == db.Postgres {
			wantStmts = append(wantStmts, "TRUNCATE event_auth_chain_links;", "TRUNCATE event_auth_chains;")
		} else {
			wantStmts = append(wantStmts, "DELETE FROM event_auth_chain_links;", "DELETE FROM event_auth_chains;")
		}
		wantStmts = append(wantStmts,
			"DELETE FROM applied_schema_deltas WHERE version = 59 AND file = '59/01ignored_user.py';",
			"DELETE FROM applied_schema_deltas WHERE version = 59 AND file = '59/06chain_cover_index.sql';")
		if strings.Join(stmts, "\n") != strings.Join(wantStmts, "\n") {
			t.Fatalf("statements:\n%s\nwant:\n%s", strings.Join(stmts, "\n"), strings.Join(wantStmts, "\n"))
		}
		if err := ApplySynapse(ctx, d, p, "test", ""); err != nil {
			t.Fatal(err)
		}
		query := func(q string) string {
			t.Helper()
			rows, err := d.Query(q)
			if err != nil {
				t.Fatalf("%s: %v", q, err)
			}
			defer rows.Close()
			var out []string
			for rows.Next() {
				var v string
				if err := rows.Scan(&v); err != nil {
					t.Fatal(err)
				}
				out = append(out, v)
			}
			return strings.Join(out, ",")
		}
		for q, want := range map[string]string{
			"SELECT CAST(version AS TEXT) FROM schema_version":                      "58",
			"SELECT file FROM applied_schema_deltas ORDER BY file":                  "58/28rejected_events_metadata.sql,59/04_event_auth_chains.sql",
			"SELECT room_id FROM rooms WHERE has_auth_chain_index ORDER BY room_id": "",
			"SELECT room_id FROM rooms ORDER BY room_id":                            "!a:example.org,!b:example.org",
			"SELECT CAST(count(*) AS TEXT) FROM event_auth_chains":                  "0",
			"SELECT CAST(count(*) AS TEXT) FROM event_auth_chain_links":             "0",
			"SELECT name || '/' || password_hash FROM users":                        "@u:example.org/x",
		} {
			if got := query(q); got != want {
				t.Errorf("%s: got %q, want %q", q, got, want)
			}
		}
		if ok, _ := d.TableExists(ctx, d, "ignored_users"); ok {
			t.Error("ignored_users is still there")
		}
		// The database now reads as v1.25.0's: the recipe does not apply
		// again, and v1.25.0 accepts it as it is.
		p, err = PlanSynapse(mustState(t, d), e, semver.MustParse("1.25.0"))
		if err != nil || !p.AsIs {
			t.Fatalf("after the recipe: %+v, %v", p, err)
		}
	})
}

func TestPlanSynapse(t *testing.T) {
	state := func(v, compat int) *schema.State {
		return &schema.State{Kind: schema.KindSynapse, HasVersion: true, Version: v, HasCompat: compat != 0, Compat: compat}
	}
	names := func(rs []Recipe) string {
		var out []string
		for _, r := range rs {
			out = append(out, r.Name)
		}
		return strings.Join(out, "; ")
	}
	for _, c := range []struct {
		v, compat int
		release   string
		asIs      bool
		recipes   string
		advice    string
		err       error
	}{
		{v: 59, release: "1.12.4", recipes: "v1.26.0 to v1.25.0; v1.13.0 to v1.12.4"},
		{v: 58, release: "1.12.4", recipes: "v1.13.0 to v1.12.4"},
		{v: 58, release: "1.25.0", asIs: true},
		{v: 56, release: "1.3.1", asIs: true, advice: "v1.4.0 to v1.3.1"},
		{v: 59, release: "1.2.0", err: ErrNoRecipe},
		{v: 83, compat: 83, release: "1.98.0", asIs: true},
		{v: 83, compat: 83, release: "1.90.0", err: ErrNoRecipe},
		{v: 83, compat: 80, release: "1.90.0", asIs: true},
		{v: 83, compat: 83, release: "9.0.0", err: schema.ErrBadTarget},
		// A compat version above the schema version: no release at the
		// target accepts it, and no recipe lowers a compat version.
		{v: 70, compat: 80, release: "1.75.0", err: ErrNoRecipe},
	} {
		p, err := PlanSynapse(state(c.v, c.compat), db.SQLite, semver.MustParse(c.release))
		if c.err != nil {
			if !errors.Is(err, c.err) {
				t.Errorf("%d/%d to %s: got %v, want %v", c.v, c.compat, c.release, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%d/%d to %s: %v", c.v, c.compat, c.release, err)
			continue
		}
		if p.AsIs != c.asIs || names(p.Recipes) != c.recipes || names(p.Advice) != c.advice {
			t.Errorf("%d/%d to %s: as is %v, recipes %q, advice %q", c.v, c.compat, c.release, p.AsIs, names(p.Recipes), names(p.Advice))
		}
	}
}
