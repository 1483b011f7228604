package gen

import (
	"context"
	"errors"
	"strings"
	"testing"

	"hsops/internal/db"
	"hsops/internal/dbtest"
	"hsops/internal/pgtest"
	"hsops/schema/engine"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// written are the tables gen fills.
var written = strings.Fields(`users profiles devices access_tokens user_filters account_data rooms events event_json
	event_edges event_auth state_groups state_groups_state state_group_edges state_events event_to_state_groups
	current_state_events room_memberships local_current_membership event_search event_relations threads redactions
	event_forward_extremities room_depth receipts_linearized stream_positions`)

// rows counts the rows of every table gen fills that the schema has.
func rows(t *testing.T, d *db.DB) map[string]int {
	t.Helper()
	ctx := context.Background()
	out := map[string]int{}
	for _, tbl := range written {
		ok, err := d.TableExists(ctx, d, tbl)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			continue
		}
		var n int
		if err := d.QueryRowContext(ctx, "SELECT count(*) FROM "+tbl).Scan(&n); err != nil {
			t.Fatal(err)
		}
		out[tbl] = n
	}
	return out
}

// TestFill_SaysWhatItWrote fills databases at an old schema version and
// at the newest, with transactions smaller than the data, and compares
// the stats with the rows.
func TestFill_SaysWhatItWrote(t *testing.T) {
	dbtest.Engines(t, func(t *testing.T, e db.Engine) {
		for _, v := range []int{69, 0} {
			tg := dbtest.New(t, e)
			var commits []int
			p := Params{Users: 6, Rooms: 3, Messages: 120, MembersPerRoom: 4, Backfilled: 2, Seed: 3, TxSize: 50,
				Progress: func(n int) { commits = append(commits, n) }}
			st, err := Fill(context.Background(), tg.Config, v, p)
			if err != nil {
				t.Fatal(err)
			}
			want := v
			if v == 0 {
				want = engine.Schema().Version
			}
			if st.SchemaVersion != want {
				t.Errorf("schema %d, want %d", st.SchemaVersion, want)
			}
			n := rows(t, tg.Open(t))
			total := 0
			for _, c := range n {
				total += c
			}
			for _, c := range []struct {
				what      string
				got, want int
			}{
				{"users", st.Users, n["users"]},
				{"rooms", st.Rooms, n["rooms"]},
				{"events", st.Events, n["events"]},
				{"state groups", st.StateGroups, n["state_groups"]},
				{"search rows", st.SearchRows, n["event_search"]},
				{"rows", st.Rows, total},
				// Per room seven state events (create, the creator's
				// join, power levels, join rules, history visibility,
				// name, topic), three more joins and two backfilled.
				{"events made", st.Events, 3*(7+3+2) + 120},
				{"extremities", n["event_forward_extremities"], 3},
				{"tokens", n["access_tokens"], 6},
			} {
				if c.got != c.want {
					t.Errorf("schema %d: %s: %d, the database has %d", v, c.what, c.got, c.want)
				}
			}
			if len(commits) < 3 || commits[len(commits)-1] != st.Events {
				t.Errorf("schema %d: progress after each transaction: %v, want several ending at %d", v, commits, st.Events)
			}
		}
	})
}

func TestFill_RefusesADatabaseWithEventsBeforeWriting(t *testing.T) {
	ctx := context.Background()
	tg := dbtest.New(t, db.SQLite)
	p := Params{Users: 2, Rooms: 1, Messages: 5, Seed: 1}
	if _, err := Fill(ctx, tg.Config, 69, p); err != nil {
		t.Fatal(err)
	}
	d := tg.Open(t)
	before := rows(t, d)
	if _, err := Fill(ctx, tg.Config, 0, p); !errors.Is(err, ErrNotEmpty) || !strings.Contains(err.Error(), "already has events (") {
		t.Fatalf("got %v, want ErrNotEmpty", err)
	}
	var v int
	if err := d.QueryRow("SELECT version FROM schema_version").Scan(&v); err != nil || v != 69 {
		t.Errorf("the refused fill left the database at schema %d (%v), want 69", v, err)
	}
	if after := rows(t, d); len(after) != len(before) || after["events"] != before["events"] {
		t.Errorf("the refused fill wrote: %v, was %v", after, before)
	}
}

func TestGenerate_RefusesADatabaseWithoutSchema(t *testing.T) {
	d := dbtest.New(t, db.SQLite).Open(t)
	if _, err := Generate(context.Background(), d, Params{Users: 1, Rooms: 1}); err == nil || !strings.Contains(err.Error(), "no schema") {
		t.Fatalf("got %v", err)
	}
}
