// Package clienttest fills a database the way clients do: it starts the
// engine on it in-process and drives the client API over loopback (rooms,
// messages, a thread and a reaction, profiles, filters, receipts in and out
// of threads, read markers, typing, account data, tags, syncs), so that the
// rollback and port tests run on rows the endpoints wrote rather than on
// generated ones.
package clienttest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"testing"

	"hsops/internal/config"
	"hsops/internal/pgtest"
	"hsops/internal/server"
)

// Config is a homeserver config for the engine on dbc, listening on a free
// loopback port, with open registration.
func Config(tb testing.TB, dbc config.Database) *config.Config {
	tb.Helper()
	var dbYAML string
	if dbc.IsSQLite() {
		dbYAML = fmt.Sprintf("database:\n  name: sqlite3\n  args:\n    database: %s\n", dbc.SQLitePath())
	} else {
		dbYAML = pgtest.Database{Config: dbc}.YAML()
	}
	cfg, err := config.Parse([]config.File{{Name: "homeserver.yaml", Data: []byte(`server_name: example.org
bcrypt_rounds: 4
enable_registration: true
enable_registration_without_verification: true
background_updates:
  sleep_enabled: false
listeners:
  - port: 0
    type: http
    bind_addresses: ['127.0.0.1']
` + dbYAML)}})
	if err != nil {
		tb.Fatal(err)
	}
	return cfg
}

// Start runs the engine on cfg until the test ends or stop is called; it
// returns the client API's base URL.
func Start(tb testing.TB, cfg *config.Config) (base string, srv *server.Server, stop func()) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.Start(ctx, server.Options{Config: cfg, Log: server.NewLogger(io.Discard, "test")})
	if err != nil {
		cancel()
		tb.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("serve: %v", err)
		}
	}
	tb.Cleanup(stop)
	return "http://" + srv.Addrs()[0].String(), srv, stop
}

// Client is a logged-in user of the client API.
type Client struct {
	tb     testing.TB
	base   string
	UserID string
	Token  string
}

// Do calls an endpoint (a path under /_matrix/client/v3) and fails the test
// unless it answers 200; it returns the JSON body.
func (c *Client) Do(method, path string, body any) map[string]any {
	c.tb.Helper()
	var rd io.Reader
	if body != nil {
		data, _ := json.Marshal(body)
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, c.base+"/_matrix/client/v3"+path, rd)
	if err != nil {
		c.tb.Fatal(err)
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.tb.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	if resp.StatusCode != 200 {
		c.tb.Fatalf("%s %s: %d %v", method, path, resp.StatusCode, out)
	}
	return out
}

// Register registers a user through /register and returns its client.
func Register(tb testing.TB, base, user string) *Client {
	tb.Helper()
	c := &Client{tb: tb, base: base}
	out := c.Do("POST", "/register", map[string]any{"username": user, "password": "pw-" + user, "auth": map[string]any{"type": "m.login.dummy"}})
	c.UserID, c.Token = out["user_id"].(string), out["access_token"].(string)
	return c
}

// Send sends a message and returns its event ID.
func (c *Client) Send(room, txn string, content map[string]any) string {
	c.tb.Helper()
	return c.Do("PUT", "/rooms/"+url.PathEscape(room)+"/send/m.room.message/"+txn, content)["event_id"].(string)
}

// Populate starts the engine on dbc (creating or upgrading its schema),
// writes a small homeserver's worth of client activity through the
// endpoints, and stops it. It returns the public room's ID.
func Populate(tb testing.TB, dbc config.Database) string {
	tb.Helper()
	base, _, stop := Start(tb, Config(tb, dbc))
	defer stop()
	alice, bob, carol := Register(tb, base, "alice"), Register(tb, base, "bob"), Register(tb, base, "carol")
	room := alice.Do("POST", "/createRoom", map[string]any{"preset": "public_chat", "name": "Ops", "topic": "upgrades"})["room_id"].(string)
	private := alice.Do("POST", "/createRoom", map[string]any{"preset": "private_chat", "invite": []string{carol.UserID}})["room_id"].(string)
	r := "/rooms/" + url.PathEscape(room)
	bob.Do("POST", r+"/join", map[string]any{})
	carol.Do("POST", r+"/join", map[string]any{})
	first := bob.Do("GET", "/sync", nil)["next_batch"].(string)

	var ids []string
	for i := 0; i < 20; i++ {
		c := []*Client{alice, bob, carol}[i%3]
		ids = append(ids, c.Send(room, fmt.Sprintf("m%d", i), map[string]any{"msgtype": "m.text", "body": fmt.Sprintf("message %d about the upgrade", i)}))
	}
	root := ids[1]
	reply := carol.Send(room, "thread1", map[string]any{"msgtype": "m.text", "body": "a reply in the thread",
		"m.relates_to": map[string]any{"rel_type": "m.thread", "event_id": root}})
	bob.Do("PUT", r+"/send/m.reaction/react1", map[string]any{"m.relates_to": map[string]any{"rel_type": "m.annotation", "event_id": ids[2], "key": "👍"}})

	alice.Do("PUT", "/profile/"+url.PathEscape(alice.UserID)+"/displayname", map[string]any{"displayname": "Alice Ops"})
	bob.Do("PUT", "/profile/"+url.PathEscape(bob.UserID)+"/avatar_url", map[string]any{"avatar_url": "mxc://example.org/bob"})
	for _, f := range []any{
		map[string]any{"room": map[string]any{"timeline": map[string]any{"limit": 20}}},
		map[string]any{"room": map[string]any{"state": map[string]any{"lazy_load_members": true}}},
	} {
		bob.Do("POST", "/user/"+url.PathEscape(bob.UserID)+"/filter", f)
	}

	bob.Do("POST", r+"/receipt/m.read/"+url.PathEscape(ids[10]), map[string]any{})
	bob.Do("POST", r+"/receipt/m.read/"+url.PathEscape(reply), map[string]any{"thread_id": root})
	carol.Do("POST", r+"/receipt/m.read.private/"+url.PathEscape(ids[15]), map[string]any{})
	carol.Do("POST", r+"/read_markers", map[string]any{"m.fully_read": ids[12], "m.read": ids[12]})
	alice.Do("PUT", r+"/typing/"+url.PathEscape(alice.UserID), map[string]any{"typing": true, "timeout": 5000})

	u := "/user/" + url.PathEscape(bob.UserID)
	bob.Do("PUT", u+"/account_data/org.example.settings", map[string]any{"theme": "dark"})
	bob.Do("PUT", u+"/account_data/org.example.settings", map[string]any{"theme": "light"})
	bob.Do("PUT", u+"/rooms/"+url.PathEscape(room)+"/account_data/org.example.room", map[string]any{"pinned": true})
	bob.Do("PUT", u+"/rooms/"+url.PathEscape(room)+"/tags/m.favourite", map[string]any{"order": 0.5})
	bob.Do("PUT", u+"/rooms/"+url.PathEscape(room)+"/tags/u.work", map[string]any{})
	bob.Do("DELETE", u+"/rooms/"+url.PathEscape(room)+"/tags/u.work", nil)
	carol.Do("PUT", "/user/"+url.PathEscape(carol.UserID)+"/rooms/"+url.PathEscape(private)+"/tags/m.lowpriority", map[string]any{})

	bob.Do("GET", "/sync?since="+url.QueryEscape(first), nil)
	carol.Do("GET", "/sync", nil)
	return room
}
