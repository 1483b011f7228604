package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"hsops/internal/config"

	"hsops/internal/db"
	"hsops/internal/dbtest"
)

func login(t *testing.T, base, user string) string {
	t.Helper()
	code, out := call(t, "POST", base+"/_matrix/client/v3/login", "", map[string]any{
		"type": "m.login.password", "identifier": map[string]any{"type": "m.id.user", "user": user}, "password": "pw",
	})
	if code != 200 {
		t.Fatalf("login %s: %d %v", user, code, out)
	}
	return out["access_token"].(string)
}

func roomURL(base, room, rest string) string {
	return base + "/_matrix/client/v3/rooms/" + url.PathEscape(room) + rest
}

func mustCall(t *testing.T, method, u, token string, body any) map[string]any {
	t.Helper()
	code, out := call(t, method, u, token, body)
	if code != 200 {
		t.Fatalf("%s %s: %d %v", method, u, code, out)
	}
	return out
}

func wantError(t *testing.T, method, u, token string, body any, code int, errcode string) {
	t.Helper()
	got, out := call(t, method, u, token, body)
	if msg, _ := out["error"].(string); got != code || out["errcode"] != errcode || msg == "" {
		t.Errorf("%s %s: got %d %v, want %d %s with an error message", method, u, got, out, code, errcode)
	}
}

// TestClientAPI_RoomJourney drives the client API as a client would: rooms
// created, joined and left, messages sent (idempotently) and paged through,
// state read, search, and the Matrix errors on the way; then checks the
// tables Synapse would have written.
func TestClientAPI_RoomJourney(t *testing.T) {
	dbtest.Engines(t, func(t *testing.T, e db.Engine) {
		tg := dbtest.New(t, e)
		r := startServer(t, testConfig(t, tg.Config, ""))
		base := r.base
		alice := register(t, base, "alice", false)
		register(t, base, "bob", false)
		register(t, base, "carol", false)
		bob := login(t, base, "bob")
		carol := login(t, base, "carol")

		room := mustCall(t, "POST", base+"/_matrix/client/v3/createRoom", alice, map[string]any{
			"preset": "public_chat", "name": "Ops", "topic": "upgrades",
		})["room_id"].(string)
		if !strings.HasPrefix(room, "!") || !strings.HasSuffix(room, ":example.org") {
			t.Fatalf("room id %q", room)
		}
		mustCall(t, "POST", roomURL(base, room, "/join"), bob, map[string]any{})
		// Joining again changes nothing.
		mustCall(t, "POST", base+"/_matrix/client/v3/join/"+url.PathEscape(room), bob, map[string]any{})

		first := mustCall(t, "PUT", roomURL(base, room, "/send/m.room.message/txn1"), bob, map[string]any{"msgtype": "m.text", "body": "I was running late"})["event_id"]
		again := mustCall(t, "PUT", roomURL(base, room, "/send/m.room.message/txn1"), bob, map[string]any{"msgtype": "m.text", "body": "I was running late"})["event_id"]
		if first != again {
			t.Errorf("the same txnId sent twice made two events: %v, %v", first, again)
		}
		for i := 1; i <= 25; i++ {
			mustCall(t, "PUT", roomURL(base, room, fmt.Sprintf("/send/m.room.message/a%d", i)), alice, map[string]any{"msgtype": "m.text", "body": fmt.Sprintf("message %d", i)})
		}

		// Page backwards through everything, 10 at a time.
		var bodies []string
		from := ""
		for pages := 0; ; pages++ {
			if pages > 10 {
				t.Fatal("pagination does not end")
			}
			u := roomURL(base, room, "/messages?dir=b&limit=10")
			if from != "" {
				u += "&from=" + from
			}
			page := mustCall(t, "GET", u, bob, nil)
			for _, ev := range page["chunk"].([]any) {
				ev := ev.(map[string]any)
				if ev["type"] == "m.room.message" {
					bodies = append(bodies, ev["content"].(map[string]any)["body"].(string))
				}
			}
			end, _ := page["end"].(string)
			if end == "" {
				break
			}
			from = end
		}
		if len(bodies) != 26 || bodies[0] != "message 25" || bodies[25] != "I was running late" {
			t.Fatalf("paged %d messages: first %q last %q", len(bodies), bodies[0], bodies[len(bodies)-1])
		}
		// Forwards, 7 at a time, the same messages in the other order.
		var forward []string
		from = ""
		for pages := 0; ; pages++ {
			if pages > 10 {
				t.Fatal("forward pagination does not end")
			}
			u := roomURL(base, room, "/messages?dir=f&limit=7")
			if from != "" {
				u += "&from=" + from
			}
			page := mustCall(t, "GET", u, bob, nil)
			chunk := page["chunk"].([]any)
			if pages == 0 && chunk[0].(map[string]any)["type"] != "m.room.create" {
				t.Errorf("forward pagination starts with %v", chunk[0])
			}
			for _, ev := range chunk {
				ev := ev.(map[string]any)
				if ev["type"] == "m.room.message" {
					forward = append(forward, ev["content"].(map[string]any)["body"].(string))
				}
			}
			end, _ := page["end"].(string)
			if end == "" {
				break
			}
			from = end
		}
		if len(forward) != len(bodies) {
			t.Fatalf("forwards %d messages, backwards %d", len(forward), len(bodies))
		}
		for i := range forward {
			if forward[i] != bodies[len(bodies)-1-i] {
				t.Fatalf("message %d forwards %q, backwards %q", i, forward[i], bodies[len(bodies)-1-i])
			}
		}
		// The start of the newest page is where new events appear.
		start := mustCall(t, "GET", roomURL(base, room, "/messages?dir=b&limit=1"), bob, nil)["start"].(string)
		mustCall(t, "PUT", roomURL(base, room, "/send/m.room.message/later"), alice, map[string]any{"msgtype": "m.text", "body": "later"})
		next := mustCall(t, "GET", roomURL(base, room, "/messages?dir=f&from="+start), bob, nil)["chunk"].([]any)
		if len(next) != 1 || next[0].(map[string]any)["content"].(map[string]any)["body"] != "later" {
			t.Errorf("forwards from the newest page's start: %v, want the one new message", next)
		}

		state := callList(t, "GET", roomURL(base, room, "/state"), bob)
		types := map[string]bool{}
		for _, ev := range state {
			types[ev["type"].(string)] = true
		}
		for _, want := range []string{"m.room.create", "m.room.member", "m.room.power_levels", "m.room.join_rules", "m.room.history_visibility", "m.room.name", "m.room.topic"} {
			if !types[want] {
				t.Errorf("state lacks %s: %v", want, types)
			}
		}
		if got := mustCall(t, "GET", base+"/_matrix/client/v3/joined_rooms", bob, nil)["joined_rooms"].([]any); len(got) != 1 || got[0] != room {
			t.Errorf("joined_rooms %v", got)
		}

		// Search stems: "run" finds "running".
		res := mustCall(t, "POST", base+"/_matrix/client/v3/search", bob, map[string]any{
			"search_categories": map[string]any{"room_events": map[string]any{"search_term": "run"}},
		})
		re := res["search_categories"].(map[string]any)["room_events"].(map[string]any)
		results := re["results"].([]any)
		if re["count"] != float64(1) || len(results) != 1 || results[0].(map[string]any)["result"].(map[string]any)["event_id"] != first {
			t.Errorf("search for run: %v", re)
		}
		// Search pages by next_batch: 25 messages, 10 at a time, each once.
		seen := map[any]bool{}
		batch := ""
		for pages := 0; ; pages++ {
			if pages > 5 {
				t.Fatal("search paging does not end")
			}
			u := base + "/_matrix/client/v3/search"
			if batch != "" {
				u += "?next_batch=" + batch
			}
			page := mustCall(t, "POST", u, bob, map[string]any{
				"search_categories": map[string]any{"room_events": map[string]any{"search_term": "message", "filter": map[string]any{"limit": 10}}},
			})["search_categories"].(map[string]any)["room_events"].(map[string]any)
			if page["count"] != float64(25) {
				t.Fatalf("count %v, want 25", page["count"])
			}
			for _, r := range page["results"].([]any) {
				id := r.(map[string]any)["result"].(map[string]any)["event_id"]
				if seen[id] {
					t.Errorf("%v returned twice", id)
				}
				seen[id] = true
			}
			nb, ok := page["next_batch"].(string)
			if !ok {
				break
			}
			batch = nb
		}
		if len(seen) != 25 {
			t.Errorf("paging returned %d results, want 25", len(seen))
		}
		wantError(t, "POST", base+"/_matrix/client/v3/search?next_batch=zz", bob, map[string]any{
			"search_categories": map[string]any{"room_events": map[string]any{"search_term": "message"}}}, 400, "M_INVALID_PARAM")
		res = mustCall(t, "POST", base+"/_matrix/client/v3/search", carol, map[string]any{
			"search_categories": map[string]any{"room_events": map[string]any{"search_term": "message"}},
		})
		if n := res["search_categories"].(map[string]any)["room_events"].(map[string]any)["count"]; n != float64(0) {
			t.Errorf("carol, who is not in the room, found %v messages", n)
		}

		// Errors.
		wantError(t, "GET", roomURL(base, room, "/state"), carol, nil, 403, "M_FORBIDDEN")
		wantError(t, "GET", roomURL(base, room, "/messages"), carol, nil, 403, "M_FORBIDDEN")
		wantError(t, "PUT", roomURL(base, room, "/send/m.room.message/c1"), carol, map[string]any{"body": "hi"}, 403, "M_FORBIDDEN")
		wantError(t, "GET", roomURL(base, "not-a-room", "/state"), bob, nil, 400, "M_INVALID_PARAM")
		wantError(t, "GET", roomURL(base, room, "/messages?dir=x"), bob, nil, 400, "M_INVALID_PARAM")
		wantError(t, "GET", roomURL(base, room, "/messages?from=zzz"), bob, nil, 400, "M_INVALID_PARAM")
		wantError(t, "POST", roomURL(base, "!nope:example.org", "/join"), bob, map[string]any{}, 404, "M_NOT_FOUND")
		wantError(t, "POST", base+"/_matrix/client/v3/search", bob, map[string]any{}, 400, "M_MISSING_PARAM")
		wantError(t, "POST", base+"/_matrix/client/v3/createRoom", bob, map[string]any{"preset": "weird"}, 400, "M_INVALID_PARAM")
		wantError(t, "POST", base+"/_matrix/client/v3/createRoom", bob, map[string]any{"invite": []string{"@bob:example.org"}}, 400, "M_INVALID_PARAM")
		wantError(t, "POST", base+"/_matrix/client/v3/createRoom", bob, map[string]any{"invite": []string{"carol"}}, 400, "M_INVALID_PARAM")
		wantError(t, "GET", base+"/_matrix/client/v3/joined_rooms", "", nil, 401, "M_MISSING_TOKEN")

		// State needs power: bob (0) cannot change the power levels or the
		// topic (state_default 50); alice (100) can.
		wantError(t, "PUT", roomURL(base, room, "/state/m.room.power_levels"), bob, map[string]any{"users": map[string]any{"@bob:example.org": 100}}, 403, "M_FORBIDDEN")
		wantError(t, "PUT", roomURL(base, room, "/state/m.room.topic"), bob, map[string]any{"topic": "mine"}, 403, "M_FORBIDDEN")
		mustCall(t, "PUT", roomURL(base, room, "/state/m.room.topic"), alice, map[string]any{"topic": "upgrades and rollbacks"})

		// A private room: carol needs an invitation.
		private := mustCall(t, "POST", base+"/_matrix/client/v3/createRoom", alice, map[string]any{})["room_id"].(string)
		wantError(t, "POST", roomURL(base, private, "/join"), carol, map[string]any{}, 403, "M_FORBIDDEN")
		wantError(t, "POST", roomURL(base, private, "/invite"), bob, map[string]any{"user_id": "@carol:example.org"}, 403, "M_FORBIDDEN")
		mustCall(t, "POST", roomURL(base, private, "/invite"), alice, map[string]any{"user_id": "@carol:example.org"})
		mustCall(t, "POST", roomURL(base, private, "/join"), carol, map[string]any{})

		// Leaving.
		mustCall(t, "POST", roomURL(base, room, "/leave"), bob, map[string]any{})
		if got := mustCall(t, "GET", base+"/_matrix/client/v3/joined_rooms", bob, nil)["joined_rooms"].([]any); len(got) != 0 {
			t.Errorf("joined_rooms after leaving: %v", got)
		}
		wantError(t, "PUT", roomURL(base, room, "/send/m.room.message/txn2"), bob, map[string]any{"body": "x"}, 403, "M_FORBIDDEN")
		wantError(t, "POST", roomURL(base, room, "/leave"), bob, map[string]any{}, 403, "M_FORBIDDEN")

		checkTables(t, r.srv.store.DB, room)

		// A worker serves the reads, not the writes.
		w := startServer(t, testConfig(t, tg.Config, "worker_app: synapse.app.generic_worker\nworker_name: reader1\nworker_listeners:\n  - port: 0\n    type: http\n    bind_addresses: ['127.0.0.1']\n"))
		page := mustCall(t, "GET", roomURL(w.base, room, "/messages?limit=5"), alice, nil)
		if len(page["chunk"].([]any)) != 5 {
			t.Errorf("worker /messages: %v", page)
		}
		wantError(t, "PUT", roomURL(w.base, room, "/send/m.room.message/w1"), alice, map[string]any{"body": "x"}, 404, "M_UNRECOGNIZED")
		wantError(t, "POST", w.base+"/_matrix/client/v3/createRoom", alice, map[string]any{}, 404, "M_UNRECOGNIZED")
		wantError(t, "POST", w.base+"/_matrix/client/v3/login", "", map[string]any{"type": "m.login.password"}, 404, "M_UNRECOGNIZED")
	})
}

func callList(t *testing.T, method, u, token string) []map[string]any {
	t.Helper()
	code, raw := callRaw(t, method, u, token)
	if code != 200 {
		t.Fatalf("%s %s: %d %s", method, u, code, raw)
	}
	var out []map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// checkTables checks what the journey left in the tables, the way Synapse
// lays them out.
func checkTables(t *testing.T, d *db.DB, room string) {
	t.Helper()
	ctx := context.Background()
	one := func(q string, args ...any) int64 {
		t.Helper()
		var n int64
		if err := d.QueryRowContext(ctx, d.Rebind(q), args...).Scan(&n); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		return n
	}
	events := one("SELECT count(*) FROM events WHERE room_id = ?", room)
	// 7 initial state events, bob's join, 27 messages, a new topic, bob's leave.
	if events != 37 {
		t.Errorf("%d events in the room, want 37", events)
	}
	if n := one("SELECT count(*) FROM event_json WHERE room_id = ?", room); n != events {
		t.Errorf("%d event_json rows for %d events", n, events)
	}
	// Every event but the create has one prev event: the timeline is a line.
	if n := one("SELECT count(*) FROM event_edges AS ee JOIN events AS e ON e.event_id = ee.event_id WHERE e.room_id = ?", room); n != events-1 {
		t.Errorf("%d edges for %d events", n, events)
	}
	if n := one("SELECT count(*) FROM event_forward_extremities WHERE room_id = ?", room); n != 1 {
		t.Errorf("%d forward extremities", n)
	}
	// A state group per state event, chained by edges.
	groups := one("SELECT count(*) FROM state_groups WHERE room_id = ?", room)
	if groups != 10 || one("SELECT count(*) FROM state_group_edges AS g JOIN state_groups AS s ON s.id = g.state_group WHERE s.room_id = ?", room) != groups-1 {
		t.Errorf("%d state groups", groups)
	}
	if n := one("SELECT count(*) FROM event_to_state_groups AS g JOIN events AS e ON e.event_id = g.event_id WHERE e.room_id = ?", room); n != events {
		t.Errorf("%d events with a state group, want %d", n, events)
	}
	if n := one("SELECT count(*) FROM current_state_events WHERE room_id = ?", room); n != 8 {
		t.Errorf("%d current state entries, want 8", n)
	}
	if n := one("SELECT count(*) FROM room_memberships WHERE room_id = ?", room); n != 3 {
		t.Errorf("%d membership rows, want 3", n)
	}
	if n := one("SELECT count(*) FROM local_current_membership WHERE room_id = ? AND membership = 'join'", room); n != 1 {
		t.Errorf("%d joined members, want 1", n)
	}
	if n := one("SELECT count(*) FROM event_txn_id_device_id WHERE room_id = ?", room); n != 27 {
		t.Errorf("%d transaction IDs, want 27", n)
	}
	// Stream orderings are distinct and increase with depth.
	if n := one(`SELECT count(*) FROM events AS a JOIN events AS b ON a.room_id = b.room_id
		WHERE a.room_id = ? AND a.depth < b.depth AND a.stream_ordering >= b.stream_ordering`, room); n != 0 {
		t.Errorf("%d pairs of events out of order", n)
	}
}

func callRaw(t *testing.T, method, u, token string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, u, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, data
}

// TestStartup_RefusesSplitStores: the engine writes state groups in the
// same transaction as events, so it refuses main and state in two
// databases, with a message that says so.
func TestStartup_RefusesSplitStores(t *testing.T) {
	dir := t.TempDir()
	cfg, err := config.Parse([]config.File{{Name: "hs.yaml", Data: []byte(fmt.Sprintf(`server_name: example.org
listeners:
  - port: 0
    type: http
    bind_addresses: ['127.0.0.1']
databases:
  one:
    name: sqlite3
    data_stores: [main]
    args:
      database: %s/main.db
  two:
    name: sqlite3
    data_stores: [state]
    args:
      database: %s/state.db
`, dir, dir))}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = Start(context.Background(), Options{Config: cfg, Log: NewLogger(io.Discard, "test")})
	if !errors.Is(err, config.ErrInvalid) || !strings.Contains(err.Error(), `keeps the main and state data stores in one database`) {
		t.Fatalf("got %v, want a refusal of split stores", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "main.db")); err == nil {
		t.Error("the refusal created main.db")
	}
}

// TestStore_ConcurrentWrites: registrations of one name at once give one
// user and M_USER_IN_USE for the others (not a 500), and logins interleaved
// with refused sends never hand out an access token id twice.
func TestStore_ConcurrentWrites(t *testing.T) {
	dbtest.Engines(t, func(t *testing.T, e db.Engine) {
		r := startServer(t, testConfig(t, dbtest.New(t, e).Config, ""))
		codes := make(chan int, 8)
		for i := 0; i < 8; i++ {
			go func() {
				_, n := callNoFail(r.base+"/_synapse/admin/v1/register", "GET", nil)
				nonce, _ := n["nonce"].(string)
				code, _ := callNoFail(r.base+"/_synapse/admin/v1/register", "POST", map[string]any{
					"nonce": nonce, "username": "dup", "password": "pw", "mac": RegistrationMAC("s3cret", nonce, "dup", "pw", false),
				})
				codes <- code
			}()
		}
		got := map[int]int{}
		for i := 0; i < 8; i++ {
			got[<-codes]++
		}
		if got[200] != 1 || got[400] != 7 {
			t.Errorf("8 registrations of one name: %v, want one 200 and seven 400 M_USER_IN_USE", got)
		}
		register(t, r.base, "erin", false)
		room := mustCall(t, "POST", r.base+"/_matrix/client/v3/createRoom", login(t, r.base, "erin"), map[string]any{})["room_id"].(string)
		dup := login(t, r.base, "dup")
		const n = 100
		done := make(chan int, 2*n)
		for i := 0; i < n; i++ {
			go func(i int) {
				code, _ := callNoFail(r.base+"/_matrix/client/v3/login", "POST", map[string]any{"type": "m.login.password", "user": "dup", "password": "pw"})
				done <- code
			}(i)
			go func(i int) {
				// Refused: dup is not in the room (a failed transaction).
				code, _ := callNoFail(roomURL(r.base, room, fmt.Sprintf("/send/m.room.message/x%d", i))+"?access_token="+dup, "PUT", map[string]any{"body": "x"})
				done <- code
			}(i)
		}
		logins := 0
		for i := 0; i < 2*n; i++ {
			if <-done == 200 {
				logins++
			}
		}
		if logins != n {
			t.Errorf("%d of %d concurrent logins succeeded (the sends are refused)", logins, n)
		}
	})
}

// callNoFail is call for goroutines: it reports failures as a 0 status.
func callNoFail(u, method string, body any) (int, map[string]any) {
	var rd io.Reader
	if body != nil {
		data, _ := json.Marshal(body)
		rd = bytes.NewReader(data)
	}
	req, _ := http.NewRequest(method, u, rd)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}
