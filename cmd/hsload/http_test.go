package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"hsops/internal/config"
	"hsops/internal/db"
	"hsops/internal/dbtest"
	"hsops/internal/fault"
	"hsops/internal/pgtest"
	"hsops/internal/server"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// startEngine runs the engine in-process on a fresh database.
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

func TestHTTPLoad(t *testing.T) {
	dbtest.Engines(t, func(t *testing.T, e db.Engine) {
		base, d := startEngine(t, e)
		var out, errOut bytes.Buffer
		code := run([]string{"http", "--url", base, "--shared-secret", "s3cret", "--users", "6", "--rooms", "3", "--members", "3",
			"--messages", "60", "--reads", "9", "--searches", "6", "--concurrency", "4", "--prefix", "t"}, &out, &errOut)
		if code != 0 {
			t.Fatalf("exit %d\n%s%s", code, out.String(), errOut.String())
		}
		for _, want := range []string{"hsload http: 6 users, 3 rooms, 60 messages", "register           6       0", "createRoom         3       0",
			"join               6       0", "send              60       0", "messages           9       0", "search             6       0"} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("report lacks %q:\n%s", want, out.String())
			}
		}
		var n int
		if err := d.QueryRow("SELECT count(*) FROM events WHERE type = 'm.room.message'").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 60 {
			t.Errorf("%d messages in the database, want 60", n)
		}

		// check reads them all back, searches and sends.
		out.Reset()
		code = run([]string{"check", "--url", base, "--login", "t-0:load-t-0", "--login", "@t-1:example.org:load-t-1", "--login", "t-2:load-t-2",
			"--expect-messages", "60", "--search", "upgrade", "--send"}, &out, &errOut)
		if code != 0 || !strings.Contains(out.String(), "3 users see 3 rooms and 60 messages (digest ") || !strings.Contains(out.String(), `search "upgrade": `) || !strings.Contains(out.String(), "sent $") {
			t.Errorf("check: exit %d\n%s%s", code, out.String(), errOut.String())
		}
		out.Reset()
		code = run([]string{"check", "--url", base, "--login", "t-0:load-t-0", "--expect-messages", "60"}, &out, &errOut)
		if code != fault.Failed.Code() || !strings.Contains(errOut.String(), "messages are readable, expected 60") {
			t.Errorf("check of one user expecting all: exit %d\n%s%s", code, out.String(), errOut.String())
		}
		out.Reset()
		errOut.Reset()
		code = run([]string{"check", "--url", base, "--login", "t-0:wrong"}, &out, &errOut)
		if code != fault.Failed.Code() || !strings.Contains(errOut.String(), "log in as t-0: HTTP 403") {
			t.Errorf("check with a wrong password: exit %d\n%s", code, errOut.String())
		}

		// A wrong secret fails the run at once, with the server's answer.
		out.Reset()
		errOut.Reset()
		code = run([]string{"http", "--url", base, "--shared-secret", "wrong", "--users", "2", "--rooms", "1", "--prefix", "u"}, &out, &errOut)
		if code != fault.Failed.Code() || !strings.Contains(errOut.String(), "requests failed: register #") || !strings.Contains(errOut.String(), "HMAC incorrect") {
			t.Errorf("exit %d\n%s%s", code, out.String(), errOut.String())
		}
	})
}

func TestHTTPLoad_Usage(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"http", "--shared-secret", "x"}, &out, &errOut); code != fault.Usage.Code() || !strings.Contains(errOut.String(), "--url") {
		t.Errorf("exit %d: %s", code, errOut.String())
	}
	errOut.Reset()
	if code := run([]string{"http", "--url", "http://127.0.0.1:1", "--shared-secret", "x", "--users", "0"}, &out, &errOut); code != fault.Usage.Code() {
		t.Errorf("exit %d: %s", code, errOut.String())
	}
	errOut.Reset()
	if code := run([]string{"http", "--url", "http://127.0.0.1:1", "--shared-secret", "x", "--users", "1", "--rooms", "1"}, &out, &errOut); code != fault.Failed.Code() || !strings.Contains(errOut.String(), "connection refused") {
		t.Errorf("unreachable server: exit %d: %s", code, errOut.String())
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

func TestGenerate_RefusesADatabaseWithEventsBeforeWriting(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "hs.yaml")
	if err := os.WriteFile(cfg, []byte("server_name: example.org\ndatabase:\n  name: sqlite3\n  args:\n    database: "+filepath.Join(dir, "hs.db")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if code := run([]string{"generate", "-c", cfg, "--schema-version", "69", "--users", "2", "--rooms", "1", "--messages", "5"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	code := run([]string{"generate", "-c", cfg, "--users", "2", "--rooms", "1", "--messages", "5"}, &out, &errOut)
	if code != fault.Failed.Code() || !strings.Contains(errOut.String(), "already has") {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	d, err := db.Open(context.Background(), config.Database{Name: config.EngineSQLite, Args: map[string]string{"database": filepath.Join(dir, "hs.db")}}, db.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var v int
	if err := d.QueryRow("SELECT version FROM schema_version").Scan(&v); err != nil || v != 69 {
		t.Errorf("the refused run left the database at schema %d (%v), want 69", v, err)
	}
}
