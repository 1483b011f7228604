package journey

import (
	"fmt"
	"strings"
	"testing"
)

// TestNormalize runs the masks and the ordering on lines as the tools print
// them: what is volatile becomes a placeholder, counts stay, equal digests
// keep equal numbers, and parallel lines come out in one order.
func TestNormalize(t *testing.T) {
	in := `started synapse.app.homeserver(/srv/matrix/hs/homeserver.yaml) in 0.66s (healthy: http://127.0.0.1:44517/health)
register           4       0       0.8  5120.3ms  5147.2ms  5147.2ms  5147.2ms
2 users see 3 rooms and 300 messages (digest 02f153125f79d021)
event_json: 100% (220/220)
devices: 100% (4/4)
Setting up sequence generators...
table                                    strategy                already       copied      time       rows/s  verify
event_json                               append-only                 220          109     0.03s         4360  
devices                                  re-copy                       0            9     0.04s          243  
rooms                                    append-only                   0            0     0.00s            -  

ported 1372 rows (0.2 MB) in 1.99s: 688 rows/s, 0.1 MB/s
2 users see 3 rooms and 301 messages (digest 8bff0ccef830a60a)
2 users see 3 rooms and 300 messages (digest 02f153125f79d021)
deployment: PostgreSQL database postgresql://postgres@127.0.0.1:38721/hsops_t_a4d6be683876 (hsops engine, schema 83, compat 83); no workers
           it serves the hsops engine database created 2026-12-03T13:29:00.239Z (schema 83/compat 83)
           PostgreSQL 15.18 (Debian 15.18-0+deb12u1); v1.98.0 requires 11 or newer (since v1.72.0)
sent $NBD7T9yyKiVMUY-VMKKUsX0UmQ18cR18Ua8VDWsH7Xk
rolled back from schema 83 to 69 (compat 69): 42 reverses in one transaction, 295 ms
the database as it was is in PostgreSQL database hsops_t_a4d6be683876_before_rollback_83_to_69_2
background updates:  16 pending
                       event_edges_replace_index (ordering 7101) progress {}
                       room_account_data_index_room_id (ordering 8204) progress {}

`
	want := `started synapse.app.homeserver(/srv/matrix/hs/homeserver.yaml) in <dur> (healthy: http://127.0.0.1:<port>/health)
register           4       0 <rate> <dur> <dur> <dur> <dur>
2 users see 3 rooms and 300 messages (digest <digest 1>)
devices: 100% (4/4)
event_json: 100% (220/220)
Setting up sequence generators...
table                                    strategy                already       copied      time       rows/s  verify
devices                                  re-copy                       0            9 <dur> <rate>  
event_json                               append-only                 220          109 <dur> <rate>  
rooms                                    append-only                   0            0 <dur> <rate>  

ported 1372 rows (<size>) in <dur>: <rate>, <rate>
2 users see 3 rooms and 301 messages (digest <digest 2>)
2 users see 3 rooms and 300 messages (digest <digest 1>)
deployment: PostgreSQL database postgresql://<server>/hsops_t_<id> (hsops engine, schema 83, compat 83); no workers
           it serves the hsops engine database created <time> (schema 83/compat 83)
           PostgreSQL <version>; v1.98.0 requires 11 or newer (since v1.72.0)
sent $<event id>
rolled back from schema 83 to 69 (compat 69): 42 reverses in one transaction, <dur>
the database as it was is in PostgreSQL database hsops_t_<id>_before_rollback_83_to_69[_n]
background updates: <n> pending (how many the engine left is timing)

`
	if got := normalize("TestX", in); got != want {
		t.Errorf("normalize:\n%s", goldenDiff("want", []byte(want), []byte(got), "fix the masks"))
	}

	// Only ClientSyncsOn masks which background updates are left.
	bg := "running background update threads_backfill\n  threads_backfill: done (0 items)\nSQLite database \"x\": 1 background update(s) done in 5ms\n"
	if got := normalize("TestJourney_SQLiteToPostgres", bg); got != strings.Replace(bg, "5ms", "<dur>", 1) {
		t.Errorf("background updates masked outside ClientSyncsOn:\n%s", got)
	}
	if got, want := normalize("TestJourney_ClientSyncsOn", bg), "running background update <those the engine left>\nSQLite database \"x\": <n> background update(s) done in <dur>\n"; got != want {
		t.Errorf("ClientSyncsOn's background updates:\n%s\nwant\n%s", got, want)
	}
}

// TestNormalize_Rehearsals: a rehearsal's names, timings and batch counts
// are masked; while hsload writes, so are the counts it changes, and the
// rehearsals one after another are written once, however many ran.
func TestNormalize_Rehearsals(t *testing.T) {
	block := func(rows, items int, ms string) string {
		return fmt.Sprintf(`$ update_database rehearse -c /srv/matrix/hs/homeserver.yaml --verify-copy
copying master to hsops_rehearse_hsops_t_95cd89f51784_20261203161911_%d
copied master (snapshot, 19.%d MiB) in %s
  copy: COPY from one exported snapshot, 19.0 MiB in 3.63s (55 tables, %d rows; data 925ms, keys and indexes 1.28s, every table checked against the source)
    (the 5 slowest and any that failed; -v lists all 33)
    73/10_update_sqlite_fts_tokenizer.go                         ok          %s     8987 rows
    73/08thread_receipts_non_null.sql.sqlite                     ok           5ms       43 rows
  background updates (they run while the homeserver serves): 1
    populate_stats_process_rooms                                 ok          15ms        %d items in %d batch
    room_stats_state                         0 -> %d
background work: 16ms flat out in %d batches; about 1.02s at the homeserver's pace

`, 18000+items, items, ms, rows, ms, items, items-3, items, items+1)
	}
	want := `$ update_database rehearse -c /srv/matrix/hs/homeserver.yaml --verify-copy
copying master to hsops_rehearse_hsops_t_<id>_<time>_<pid>
copied master (snapshot, <size>) in <dur>
  copy: COPY from one exported snapshot, <size> in <dur> (55 tables, <n> rows; data <dur>, keys and indexes <dur>, every table checked against the source)
    (the 5 slowest and any that failed; -v lists all 33)
    <the slowest deltas, by their timing>
  background updates (they run while the homeserver serves): 1
    populate_stats_process_rooms                                 ok <dur> <n> items in <n> batches
    room_stats_state                         0 -> <n>
background work: <dur> flat out in <n> batches; about <dur> at the homeserver's pace

(the same, as many times as the timing allowed)

$ synctl stop /srv/matrix/hs/homeserver.yaml
stopped synapse.app.homeserver

`
	stop := "$ synctl stop /srv/matrix/hs/homeserver.yaml\nstopped synapse.app.homeserver\n\n"
	once := block(25329, 4, "74ms") + stop
	thrice := block(25329, 4, "74ms") + block(26087, 6, "92ms") + block(38537, 6, "1.2s") + stop
	for _, in := range []string{once, thrice} {
		if got := normalize("TestJourney_RehearseWhileServing/postgres", in); got != want {
			t.Errorf("normalize:\n%s", goldenDiff("want", []byte(want), []byte(got), "fix the masks"))
		}
	}
	// Elsewhere the counts stay, and so does every rehearsal.
	got := normalize("TestJourney_RehearseKilled", thrice)
	for _, s := range []string{"4 items in <n> batches", "room_stats_state                         0 -> 6", "(55 tables, 26087 rows;"} {
		if !strings.Contains(got, s) {
			t.Errorf("no %q in:\n%s", s, got)
		}
	}
	if n := strings.Count(got, "$ update_database rehearse"); n != 3 {
		t.Errorf("%d rehearsals left of 3:\n%s", n, got)
	}
}

// TestGoldenDiff checks the failure: short, naming the golden file and the
// command that regenerates it.
func TestGoldenDiff(t *testing.T) {
	var want, got strings.Builder
	for i := range 100 {
		line := "line " + strings.Repeat("x", i%7) + "\n"
		want.WriteString(line)
		if i == 50 || i == 51 {
			line = "changed " + line
		}
		got.WriteString(line)
	}
	msg := goldenDiff("journey/testdata/TestJourney_X.golden", []byte(want.String()), []byte(got.String()), "go test ./journey -run '^TestJourney_X$' -update")
	for _, s := range []string{"journey/testdata/TestJourney_X.golden", "go test ./journey -run '^TestJourney_X$' -update", "+changed line x", "-line x"} {
		if !strings.Contains(msg, s) {
			t.Errorf("no %q in:\n%s", s, msg)
		}
	}
	if n := strings.Count(msg, "\n"); n > maxDiffLines+2 {
		t.Errorf("%d lines:\n%s", n, msg)
	}
	if goldenDiff("p", []byte("a\n"), []byte("a\n"), "fix") != "" {
		t.Error("equal files differ")
	}
	if got, want := updateCommand("TestA/b"), "go test ./journey -run '^TestA$/^b$' -update"; got != want {
		t.Errorf("updateCommand: %s, want %s", got, want)
	}
}
