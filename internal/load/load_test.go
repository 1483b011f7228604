package load

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"hsops/internal/config"
	"hsops/internal/db"
	"hsops/internal/dbtest"
	"hsops/internal/pgtest"
	"hsops/internal/server"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// startEngine runs the engine in this process on a fresh database and
// returns its client API's base URL and the database.
func startEngine(t testing.TB, e db.Engine) (string, *db.DB) {
	t.Helper()
	tg := dbtest.New(t, e)
	var dbYAML string
	if e == db.SQLite {
		dbYAML = fmt.Sprintf("database:\n  name: sqlite3\n  args:\n    database: %s\n", tg.Config.SQLitePath())
	} else {
		dbYAML = pgtest.Database{Config: tg.Config}.YAML()
	}
	cfg, err := config.Parse([]config.File{{Name: "hs.yaml", Data: []byte(`server_name: example.org
registration_shared_secret: s3cret
bcrypt_rounds: 4
listeners:
  - port: 0
    type: http
    bind_addresses: ['127.0.0.1']
` + dbYAML)}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.Start(ctx, server.Options{Config: cfg, Log: server.NewLogger(io.Discard, "test")})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return "http://" + srv.Addrs()[0].String(), tg.Open(t)
}

// TestRunThenCheck makes load, then reads it back as three of the users.
func TestRunThenCheck(t *testing.T) {
	dbtest.Engines(t, func(t *testing.T, e db.Engine) {
		ctx := context.Background()
		base, d := startEngine(t, e)
		rep, err := Run(ctx, Params{URL: base, SharedSecret: "s3cret", Users: 6, Rooms: 3, Members: 3, Messages: 60, Reads: 9, Searches: 6, Concurrency: 4, Prefix: "t"})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, p := range rep.Phases {
			got = append(got, fmt.Sprintf("%s %d/%d", p.Name, p.Requests, p.Errors))
		}
		if want := "register 6/0 createRoom 3/0 join 6/0 send 60/0 messages 9/0 search 6/0"; strings.Join(got, " ") != want {
			t.Errorf("phases %q, want %q", strings.Join(got, " "), want)
		}
		var n int
		if err := d.QueryRow("SELECT count(*) FROM events WHERE type = 'm.room.message'").Scan(&n); err != nil || n != 60 {
			t.Errorf("%d messages in the database (%v), want 60", n, err)
		}

		all := CheckParams{URL: base, Logins: []Login{{"t-0", "load-t-0"}, {"@t-1:example.org", "load-t-1"}, {"t-2", "load-t-2"}}, Expect: 60, Search: "upgrade"}
		ck, err := Check(ctx, all)
		if err != nil || ck.Users != 3 || ck.Rooms != 3 || ck.Messages != 60 || ck.Hits == 0 || len(ck.Digest) != 16 {
			t.Fatalf("check: %+v, %v", ck, err)
		}
		again, err := Check(ctx, CheckParams{URL: base, Logins: all.Logins, Expect: -1})
		if err != nil || again.Digest != ck.Digest {
			t.Errorf("the digest changed without writes: %s, then %+v (%v)", ck.Digest, again, err)
		}
		sent, err := Check(ctx, CheckParams{URL: base, Logins: all.Logins, Expect: 60, Send: true})
		if err != nil || !strings.HasPrefix(sent.Sent, "$") {
			t.Errorf("send: %+v, %v", sent, err)
		}
		after, err := Check(ctx, CheckParams{URL: base, Logins: all.Logins, Expect: 61})
		if err != nil || after.Digest == ck.Digest {
			t.Errorf("after a send: %+v, %v", after, err)
		}
		one, err := Check(ctx, CheckParams{URL: base, Logins: all.Logins[:1], Expect: 61})
		if !errors.Is(err, ErrCheckFailed) || one == nil || one.Messages >= 61 {
			t.Errorf("one user expecting every message: %+v, %v", one, err)
		}
		var apiErr *APIError
		if _, err := Check(ctx, CheckParams{URL: base, Logins: []Login{{"t-0", "wrong"}}, Expect: -1}); !errors.As(err, &apiErr) || apiErr.Status != 403 {
			t.Errorf("a wrong password: %v", err)
		}
		bad, err := Run(ctx, Params{URL: base, SharedSecret: "wrong", Users: 2, Rooms: 1, Concurrency: 1, Prefix: "u"})
		if !errors.Is(err, ErrRequestsFailed) || len(bad.Phases) != 1 || !strings.Contains(bad.FirstError, "HMAC incorrect") {
			t.Errorf("a wrong secret: %+v, %v", bad, err)
		}
	})
}

func TestParseLogin(t *testing.T) {
	for in, want := range map[string]Login{
		"alice:secret":               {"alice", "secret"},
		"alice:with:colons":          {"alice", "with:colons"},
		"@alice:example.org:secret":  {"@alice:example.org", "secret"},
		"@alice:example.org:8448:pw": {"@alice:example.org:8448", "pw"},
	} {
		if got, err := ParseLogin(in); err != nil || got != want {
			t.Errorf("ParseLogin(%q) = %+v, %v, want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"alice", ":secret", "@alice"} {
		if _, err := ParseLogin(in); !errors.Is(err, ErrBadLogin) {
			t.Errorf("ParseLogin(%q): %v, want ErrBadLogin", in, err)
		}
	}
}

func TestPercentile(t *testing.T) {
	ms := func(ns ...int) []time.Duration {
		out := make([]time.Duration, len(ns))
		for i, n := range ns {
			out[i] = time.Duration(n) * time.Millisecond
		}
		return out
	}
	sixty := make([]int, 60)
	for i := range sixty {
		sixty[i] = 60 - i
	}
	for _, c := range []struct {
		ds   []time.Duration
		q    float64
		want float64
	}{
		{ms(sixty...), 0.99, 60}, // 99% of 60 is 59.4: the 60th value
		{ms(sixty...), 0.50, 30},
		{ms(1, 2, 3, 4, 5, 6, 7, 8, 9), 0.90, 9},
		{ms(5), 0.99, 5},
		{ms(1, 2, 3, 4), 1, 4},
	} {
		if got := percentile(c.ds, c.q); got != c.want {
			t.Errorf("p%.0f of %d values: got %v, want %v", c.q*100, len(c.ds), got, c.want)
		}
	}
}
