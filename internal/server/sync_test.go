package server

import (
	"encoding/json"
	"net/url"
	"sort"
	"strings"
	"testing"

	"hsops/internal/db"
	"hsops/internal/dbtest"
)

const v3 = "/_matrix/client/v3"

func syncURL(base, since, extra string) string {
	u := base + v3 + "/sync?timeout=0"
	if since != "" {
		u += "&since=" + url.QueryEscape(since)
	}
	return u + extra
}

// joined is rooms.join[room] of a sync (nil when absent).
func joined(out map[string]any, room string) map[string]any {
	rooms, _ := out["rooms"].(map[string]any)
	join, _ := rooms["join"].(map[string]any)
	jr, _ := join[room].(map[string]any)
	return jr
}

func section(out map[string]any, kind, room string) map[string]any {
	rooms, _ := out["rooms"].(map[string]any)
	m, _ := rooms[kind].(map[string]any)
	r, _ := m[room].(map[string]any)
	return r
}

func events(m map[string]any, part string) []map[string]any {
	p, _ := m[part].(map[string]any)
	list, _ := p["events"].([]any)
	var out []map[string]any
	for _, e := range list {
		out = append(out, e.(map[string]any))
	}
	return out
}

func bodies(evs []map[string]any) []string {
	var out []string
	for _, e := range evs {
		if e["type"] == "m.room.message" {
			out = append(out, e["content"].(map[string]any)["body"].(string))
		}
	}
	return out
}

// TestSync_RoomsInvitesLeavesAndFilters: what each section of /sync holds
// as memberships change: an invitation with its stripped state, a join
// seen as a new room with its state, a leave with the timeline up to it;
// lazy-loaded members, full_state, timeline limits, and the errors.
func TestSync_RoomsInvitesLeavesAndFilters(t *testing.T) {
	dbtest.Engines(t, func(t *testing.T, e db.Engine) {
		tg := dbtest.New(t, e)
		r := startServer(t, testConfig(t, tg.Config, ""))
		base := r.base
		alice := register(t, base, "alice", false)
		bob := register(t, base, "bob", false)
		carol := register(t, base, "carol", false)
		room := mustCall(t, "POST", base+v3+"/createRoom", alice, map[string]any{"preset": "private_chat", "name": "Ops", "invite": []string{"@carol:example.org"}})["room_id"].(string)
		mustCall(t, "POST", roomURL(base, room, "/invite"), alice, map[string]any{"user_id": "@bob:example.org"})

		// Invited: the room is in rooms.invite with its stripped state.
		carolSync := mustCall(t, "GET", syncURL(base, "", ""), carol, nil)
		inv := section(carolSync, "invite", room)
		var types []string
		for _, ev := range events(inv, "invite_state") {
			types = append(types, ev["type"].(string))
			if _, ok := ev["event_id"]; ok {
				t.Errorf("stripped state has an event_id: %v", ev)
			}
		}
		sort.Strings(types)
		if strings.Join(types, ",") != "m.room.create,m.room.join_rules,m.room.member,m.room.name" || joined(carolSync, room) != nil {
			t.Fatalf("carol's invite: %v", carolSync["rooms"])
		}
		mustCall(t, "POST", roomURL(base, room, "/join"), bob, map[string]any{})
		mustCall(t, "POST", roomURL(base, room, "/join"), carol, map[string]any{})
		for i := 0; i < 5; i++ {
			mustCall(t, "PUT", roomURL(base, room, "/send/m.room.message/a"+string(rune('0'+i))), alice, map[string]any{"msgtype": "m.text", "body": "m" + string(rune('0'+i))})
		}
		// Joined since the token: the room comes whole, limited.
		next := mustCall(t, "GET", syncURL(base, carolSync["next_batch"].(string), ""), carol, nil)
		jr := joined(next, room)
		if jr == nil || section(next, "invite", room) != nil {
			t.Fatalf("carol's sync after joining: %v", next["rooms"])
		}
		if tl := jr["timeline"].(map[string]any); tl["limited"] != true || strings.Join(bodies(events(jr, "timeline")), ",") != "m0,m1,m2,m3,m4" {
			t.Errorf("timeline after joining: %v", tl)
		}
		var stateTypes []string
		for _, ev := range events(jr, "state") {
			stateTypes = append(stateTypes, ev["type"].(string))
		}
		if !strings.Contains(strings.Join(stateTypes, ","), "m.room.create") {
			t.Errorf("state after joining: %v", stateTypes)
		}
		if s := jr["summary"].(map[string]any); s["m.joined_member_count"] != float64(3) {
			t.Errorf("summary: %v", s)
		}
		if n := jr["unread_notifications"].(map[string]any)["notification_count"]; n != float64(5) {
			t.Errorf("unread: %v, want 5", n)
		}

		// Lazy-loaded members: only the timeline's senders (and oneself).
		lazy := `&filter=` + url.QueryEscape(`{"room":{"timeline":{"limit":2},"state":{"lazy_load_members":true}}}`)
		jr = joined(mustCall(t, "GET", syncURL(base, "", lazy), bob, nil), room)
		members := map[string]bool{}
		for _, ev := range events(jr, "state") {
			if ev["type"] == "m.room.member" {
				members[ev["state_key"].(string)] = true
			}
		}
		if len(events(jr, "timeline")) != 2 || members["@carol:example.org"] || !members["@alice:example.org"] || !members["@bob:example.org"] {
			t.Errorf("lazy-loaded members %v with %d timeline events", members, len(events(jr, "timeline")))
		}

		// Left since the token: rooms.leave with the timeline up to the leave.
		before := mustCall(t, "GET", syncURL(base, "", ""), bob, nil)["next_batch"].(string)
		mustCall(t, "PUT", roomURL(base, room, "/send/m.room.message/last"), alice, map[string]any{"msgtype": "m.text", "body": "last words"})
		mustCall(t, "POST", roomURL(base, room, "/leave"), bob, map[string]any{})
		mustCall(t, "PUT", roomURL(base, room, "/send/m.room.message/after"), alice, map[string]any{"msgtype": "m.text", "body": "after bob left"})
		left := mustCall(t, "GET", syncURL(base, before, ""), bob, nil)
		lr := section(left, "leave", room)
		tl := events(lr, "timeline")
		if joined(left, room) != nil || len(tl) != 2 || tl[1]["type"] != "m.room.member" || strings.Join(bodies(tl), ",") != "last words" {
			t.Errorf("bob's leave: %v", left["rooms"])
		}
		// full_state: the whole state again, on an incremental sync.
		full := mustCall(t, "GET", syncURL(base, carolSync["next_batch"].(string), "&full_state=true"), alice, nil)
		if n := len(events(joined(full, room), "state")); n < 5 {
			t.Errorf("full_state gave %d state events", n)
		}

		wantError(t, "GET", syncURL(base, "not-a-token", ""), alice, nil, 400, "M_INVALID_PARAM")
		wantError(t, "GET", syncURL(base, "", "&filter=99"), alice, nil, 404, "M_NOT_FOUND")
		wantError(t, "GET", base+v3+"/sync?timeout=soon", alice, nil, 400, "M_INVALID_PARAM")
		w := startServer(t, testConfig(t, tg.Config, "worker_app: synapse.app.generic_worker\nworker_name: reader1\nworker_listeners:\n  - port: 0\n    type: http\n    bind_addresses: ['127.0.0.1']\n"))
		wantError(t, "GET", syncURL(w.base, "", ""), alice, nil, 404, "M_UNRECOGNIZED")
	})
}

// TestSync_LongPollWakesAndShutdownAnswers: a long-poll wakes when a typing
// notice expires (a timer, no request), and one still open when the server
// stops is answered at once, with a next_batch to go on from.
func TestSync_LongPollWakesAndShutdownAnswers(t *testing.T) {
	tg := dbtest.New(t, db.SQLite)
	r := startServer(t, testConfig(t, tg.Config, ""))
	base := r.base
	alice := register(t, base, "alice", false)
	room := mustCall(t, "POST", base+v3+"/createRoom", alice, map[string]any{"preset": "public_chat"})["room_id"].(string)
	mustCall(t, "PUT", roomURL(base, room, "/typing/@alice:example.org"), alice, map[string]any{"typing": true, "timeout": 200})
	since := mustCall(t, "GET", syncURL(base, "", ""), alice, nil)["next_batch"].(string)
	// Waits up to 10 minutes unless the expiry wakes it.
	out := mustCall(t, "GET", base+v3+"/sync?timeout=600000&since="+url.QueryEscape(since), alice, nil)
	var typing []map[string]any
	for _, ev := range events(joined(out, room), "ephemeral") {
		if ev["type"] == "m.typing" {
			typing = append(typing, ev)
		}
	}
	if len(typing) != 1 || len(typing[0]["content"].(map[string]any)["user_ids"].([]any)) != 0 {
		t.Fatalf("the expiry of the typing notice: %v", out)
	}
	answered := make(chan map[string]any)
	go func() {
		_, out := call(t, "GET", base+v3+"/sync?timeout=600000&since="+url.QueryEscape(out["next_batch"].(string)), alice, nil)
		answered <- out
	}()
	// The long-poll is registered once the notifier has it.
	for r.srv.store.Notifier.Listening() == 0 {
		select {
		case out := <-answered:
			t.Fatalf("the long-poll returned with nothing to say: %v", out)
		default:
		}
	}
	r.stop()
	if out := <-answered; out["next_batch"] == nil {
		t.Fatalf("the long-poll open at shutdown: %v", out)
	}
}

// TestClientAPI_ProfilesReceiptsAccountData checks the rows the endpoints
// write, as Synapse writes them, and their errors.
func TestClientAPI_ProfilesReceiptsAccountData(t *testing.T) {
	dbtest.Engines(t, func(t *testing.T, e db.Engine) {
		tg := dbtest.New(t, e)
		r := startServer(t, testConfig(t, tg.Config, ""))
		base := r.base
		alice := register(t, base, "alice", false)
		bob := register(t, base, "bob", false)
		room := mustCall(t, "POST", base+"/_matrix/client/r0/createRoom", alice, map[string]any{"preset": "public_chat", "name": "Ops"})["room_id"].(string)
		mustCall(t, "POST", roomURL(base, room, "/join"), bob, map[string]any{})
		ev := mustCall(t, "PUT", roomURL(base, room, "/send/m.room.message/1"), alice, map[string]any{"msgtype": "m.text", "body": "hi"})["event_id"].(string)

		// State events with and without a state key, under r0 and v3.
		for _, p := range []string{"/_matrix/client/r0", v3} {
			if got := mustCall(t, "GET", base+p+"/rooms/"+url.PathEscape(room)+"/state/m.room.name", bob, nil); got["name"] != "Ops" {
				t.Errorf("%s m.room.name: %v", p, got)
			}
			if got := mustCall(t, "GET", base+p+"/rooms/"+url.PathEscape(room)+"/state/m.room.member/@alice:example.org", bob, nil); got["membership"] != "join" {
				t.Errorf("%s member: %v", p, got)
			}
		}
		wantError(t, "GET", roomURL(base, room, "/state/m.room.topic"), bob, nil, 404, "M_NOT_FOUND")

		// Profiles: the row, and a new member event in the room.
		mustCall(t, "PUT", base+v3+"/profile/@alice:example.org/displayname", alice, map[string]any{"displayname": "Alice Ops"})
		wantError(t, "PUT", base+v3+"/profile/@alice:example.org/displayname", bob, map[string]any{"displayname": "x"}, 403, "M_FORBIDDEN")
		wantError(t, "GET", base+v3+"/profile/@nobody:example.org", "", nil, 404, "M_NOT_FOUND")
		if got := mustCall(t, "GET", base+v3+"/rooms/"+url.PathEscape(room)+"/joined_members", bob, nil)["joined"].(map[string]any)["@alice:example.org"]; got.(map[string]any)["display_name"] != "Alice Ops" {
			t.Errorf("joined_members: %v", got)
		}

		// Receipts and markers.
		mustCall(t, "POST", roomURL(base, room, "/receipt/m.read/"+url.PathEscape(ev)), bob, nil)
		mustCall(t, "POST", roomURL(base, room, "/receipt/m.read/"+url.PathEscape(ev)), bob, map[string]any{"thread_id": "main"})
		mustCall(t, "POST", roomURL(base, room, "/read_markers"), bob, map[string]any{"m.fully_read": ev})
		wantError(t, "POST", roomURL(base, room, "/receipt/m.read/$nope"), bob, nil, 404, "M_NOT_FOUND")
		wantError(t, "POST", roomURL(base, room, "/receipt/m.seen/"+url.PathEscape(ev)), bob, nil, 400, "M_INVALID_PARAM")
		wantError(t, "PUT", roomURL(base, room, "/typing/@alice:example.org"), bob, map[string]any{"typing": true}, 403, "M_FORBIDDEN")

		// Account data, tags, filters.
		u := base + v3 + "/user/@bob:example.org"
		mustCall(t, "PUT", u+"/account_data/org.example", bob, map[string]any{"a": 1})
		mustCall(t, "PUT", u+"/rooms/"+url.PathEscape(room)+"/tags/u.work", bob, map[string]any{"order": 1})
		wantError(t, "PUT", u+"/rooms/"+url.PathEscape(room)+"/account_data/m.fully_read", bob, map[string]any{}, 400, "M_BAD_JSON")
		wantError(t, "PUT", u+"/account_data/org.example", alice, map[string]any{}, 403, "M_FORBIDDEN")
		wantError(t, "GET", u+"/account_data/org.missing", bob, nil, 404, "M_NOT_FOUND")
		f1 := mustCall(t, "POST", u+"/filter", bob, map[string]any{"room": map[string]any{"timeline": map[string]any{"limit": 3}}})["filter_id"]
		f2 := mustCall(t, "POST", u+"/filter", bob, map[string]any{"room": map[string]any{"timeline": map[string]any{"limit": 3}}})["filter_id"]
		f3 := mustCall(t, "POST", u+"/filter", bob, map[string]any{"presence": map[string]any{}})["filter_id"]
		if f1 != "0" || f2 != "0" || f3 != "1" {
			t.Errorf("filter ids %v %v %v, want 0 0 1 (an identical filter is not stored twice)", f1, f2, f3)
		}
		if got := mustCall(t, "GET", u+"/filter/0", bob, nil); got["room"] == nil {
			t.Errorf("filter 0: %v", got)
		}

		d := tg.Open(t)
		dump := func(q string) string {
			t.Helper()
			rows, err := d.Query(q)
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			cols, _ := rows.Columns()
			var out []string
			for rows.Next() {
				vals := make([]any, len(cols))
				ptrs := make([]any, len(cols))
				for i := range vals {
					ptrs[i] = &vals[i]
				}
				if err := rows.Scan(ptrs...); err != nil {
					t.Fatal(err)
				}
				var parts []string
				for _, v := range vals {
					if b, ok := v.([]byte); ok {
						v = string(b)
					}
					data, _ := json.Marshal(v)
					parts = append(parts, string(data))
				}
				out = append(out, strings.Join(parts, " "))
			}
			return strings.Join(out, "\n")
		}
		if got := dump("SELECT user_id, full_user_id, displayname FROM profiles WHERE user_id = 'alice'"); got != `"alice" "@alice:example.org" "Alice Ops"` {
			t.Errorf("profiles: %s", got)
		}
		if got := dump("SELECT receipt_type, user_id, thread_id, instance_name, stream_id FROM receipts_linearized ORDER BY stream_id"); got != `"m.read" "@bob:example.org" null "master" 1`+"\n"+`"m.read" "@bob:example.org" "main" "master" 2` {
			t.Errorf("receipts_linearized:\n%s", got)
		}
		if got := dump("SELECT count(*) FROM receipts_linearized AS r JOIN events AS e ON e.event_id = r.event_id AND e.stream_ordering = r.event_stream_ordering"); got != "2" {
			t.Errorf("receipts with their event's stream ordering: %s", got)
		}
		if got := dump("SELECT receipt_type, user_id, event_ids, thread_id FROM receipts_graph ORDER BY thread_id"); !strings.Contains(got, `"[\"`+ev+`\"]"`) || strings.Count(got, "\n") != 1 {
			t.Errorf("receipts_graph:\n%s", got)
		}
		// One sequence numbers account data, room account data and tags.
		got := dump(`SELECT 'g', account_data_type, stream_id FROM account_data UNION ALL SELECT 'r', account_data_type, stream_id FROM room_account_data
			UNION ALL SELECT 't', room_id, stream_id FROM room_tags_revisions ORDER BY 3`)
		want := `"r" "m.fully_read" 1` + "\n" + `"g" "org.example" 2` + "\n" + `"t" "` + room + `" 3`
		if got != want {
			t.Errorf("account data streams:\n%s\nwant\n%s", got, want)
		}
		if got := dump("SELECT user_id, full_user_id, filter_id FROM user_filters ORDER BY filter_id"); got != `"bob" "@bob:example.org" 0`+"\n"+`"bob" "@bob:example.org" 1` {
			t.Errorf("user_filters:\n%s", got)
		}
	})
}

func TestClientAPI_VersionsAndRegistration(t *testing.T) {
	tg := dbtest.New(t, db.SQLite)
	closed := startServer(t, testConfig(t, tg.Config, ""))
	wantError(t, "POST", closed.base+"/_matrix/client/r0/register", "", map[string]any{"username": "x", "password": "y", "auth": map[string]any{"type": "m.login.dummy"}}, 403, "M_FORBIDDEN")
	closed.stop()
	r := startServer(t, testConfig(t, tg.Config, "enable_registration: true\n"))
	code, out := call(t, "POST", r.base+"/_matrix/client/r0/register", "", map[string]any{"username": "x", "password": "y"})
	if code != 401 || out["session"] == nil {
		t.Errorf("register without auth: %d %v, want 401 with the flows", code, out)
	}
	out = mustCall(t, "POST", r.base+"/_matrix/client/r0/register", "", map[string]any{"username": "dave", "password": "pw", "auth": map[string]any{"type": "m.login.dummy"}})
	if out["user_id"] != "@dave:example.org" || out["access_token"] == nil {
		t.Errorf("register: %v", out)
	}
	wantError(t, "POST", r.base+v3+"/register", "", map[string]any{"username": "dave", "password": "pw", "auth": map[string]any{"type": "m.login.dummy"}}, 400, "M_USER_IN_USE")
	wantError(t, "POST", r.base+v3+"/register", "", map[string]any{"username": "Bad Name", "password": "pw", "auth": map[string]any{"type": "m.login.dummy"}}, 400, "M_INVALID_USERNAME")
	versions := mustCall(t, "GET", r.base+"/_matrix/client/versions", "", nil)["versions"].([]any)
	if versions[0] != "r0.0.1" {
		t.Errorf("versions: %v", versions)
	}
}
