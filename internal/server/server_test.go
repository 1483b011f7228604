package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"hsops/internal/config"
	"hsops/internal/db"
	"hsops/internal/dbtest"
	"hsops/internal/pgtest"
	"hsops/schema"
	"hsops/schema/engine"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func testConfig(t *testing.T, dbc config.Database, extra string) *config.Config {
	t.Helper()
	var dbYAML string
	if dbc.IsSQLite() {
		dbYAML = fmt.Sprintf("database:\n  name: sqlite3\n  args:\n    database: %s\n", dbc.SQLitePath())
	} else {
		dbYAML = pgtest.Database{Config: dbc}.YAML()
	}
	cfg, err := config.Parse([]config.File{{Name: "hs.yaml", Data: []byte(`server_name: example.org
registration_shared_secret: s3cret
bcrypt_rounds: 4
background_updates:
  sleep_enabled: false
listeners:
  - port: 0
    type: http
    bind_addresses: ['127.0.0.1']
` + dbYAML + extra)}})
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

type running struct {
	srv  *Server
	base string
	stop func()
}

func startServer(t *testing.T, cfg *config.Config) running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var logBuf bytes.Buffer
	srv, err := Start(ctx, Options{Config: cfg, Log: NewLogger(&logBuf, "test"), Notify: SDNotify})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}
	t.Cleanup(stop)
	return running{srv: srv, base: "http://" + srv.Addrs()[0].String(), stop: stop}
}

func call(t *testing.T, method, url, token string, body any) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		data, _ := json.Marshal(body)
		rd = bytes.NewReader(data)
	}
	req, _ := http.NewRequest(method, url, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func register(t *testing.T, base, user string, admin bool) string {
	t.Helper()
	_, n := call(t, "GET", base+"/_synapse/admin/v1/register", "", nil)
	nonce := n["nonce"].(string)
	code, out := call(t, "POST", base+"/_synapse/admin/v1/register", "", map[string]any{
		"nonce": nonce, "username": user, "password": "pw", "admin": admin,
		"mac": RegistrationMAC("s3cret", nonce, user, "pw", admin),
	})
	if code != 200 {
		t.Fatalf("register %s: %d %v", user, code, out)
	}
	return out["access_token"].(string)
}

func TestAdminAPI_BackgroundUpdates(t *testing.T) {
	dbtest.Engines(t, func(t *testing.T, e db.Engine) {
		r := startServer(t, testConfig(t, dbtest.New(t, e).Config, ""))
		admin := register(t, r.base, "admin", true)
		user := register(t, r.base, "bob", false)
		url := r.base + "/_synapse/admin/v1/background_updates/"

		cases := []struct {
			method, path, token string
			body                any
			code                int
			want                string
		}{
			{"GET", "status", "", nil, 401, `"errcode":"M_MISSING_TOKEN"`},
			{"GET", "status", "nope", nil, 401, `"errcode":"M_UNKNOWN_TOKEN"`},
			{"GET", "status", user, nil, 403, `"error":"You are not a server admin"`},
			{"GET", "status", admin, nil, 200, `"current_updates":{},"enabled":true`},
			{"POST", "enabled", admin, map[string]any{"enabled": "yes"}, 400, `'enabled' parameter must be a boolean`},
			{"POST", "enabled", admin, map[string]any{"enabled": false}, 200, `"enabled":false`},
			{"GET", "enabled", admin, nil, 200, `"enabled":false`},
			{"POST", "enabled", admin, map[string]any{}, 200, `"enabled":true`},
			{"POST", "start_job", admin, map[string]any{}, 400, `"error":"Missing params: ['job_name']"`},
			{"POST", "start_job", admin, map[string]any{"job_name": "frobnicate"}, 400, `"error":"Invalid job_name"`},
			{"POST", "enabled", admin, map[string]any{"enabled": false}, 200, `"enabled":false`},
			{"POST", "start_job", admin, map[string]any{"job_name": "populate_stats_process_rooms"}, 200, `{}`},
			{"POST", "start_job", admin, map[string]any{"job_name": "populate_stats_process_rooms"}, 400, `"error":"Job populate_stats_process_rooms is already in queue of background updates."`},
		}
		for _, c := range cases {
			code, out := call(t, c.method, url+c.path, c.token, c.body)
			got, _ := json.Marshal(out)
			if code != c.code || !strings.Contains(string(got), c.want) {
				t.Errorf("%s %s: got %d %s, want %d containing %s", c.method, c.path, code, got, c.code, c.want)
			}
		}
		// Re-enabled, the queued job runs in-process.
		call(t, "POST", url+"enabled", admin, map[string]any{"enabled": true})
		deadline := time.Now().Add(10 * time.Second)
		for {
			st, err := schema.ReadUpdates(context.Background(), r.srv.store.DB)
			if err != nil {
				t.Fatal(err)
			}
			if len(st) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("job still pending: %v", st)
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

func TestStartup_UpgradesAndRunsBackgroundUpdates(t *testing.T) {
	dbtest.Engines(t, func(t *testing.T, e db.Engine) {
		tg := dbtest.New(t, e)
		d := tg.Open(t)
		if _, err := engine.Schema().Apply(context.Background(), d, schema.Options{Target: 75}); err != nil {
			t.Fatal(err)
		}
		r := startServer(t, testConfig(t, tg.Config, ""))
		deadline := time.Now().Add(20 * time.Second)
		for {
			st, err := schema.ReadState(context.Background(), d, d.DB)
			if err != nil {
				t.Fatal(err)
			}
			if st.Version == 83 && len(st.Updates) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("still at %d with %d updates pending", st.Version, len(st.Updates))
			}
			time.Sleep(20 * time.Millisecond)
		}
		r.stop()
	})
}

func TestSDNotify(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	r := startServer(t, testConfig(t, dbtest.New(t, db.SQLite).Config, ""))
	read := func() string {
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 512)
		n, _, err := conn.ReadFromUnix(buf)
		if err != nil {
			t.Fatal(err)
		}
		return string(buf[:n])
	}
	if got := read(); !strings.HasPrefix(got, "READY=1\nMAINPID=") {
		t.Errorf("first notification %q, want READY=1", got)
	}
	r.stop()
	if got := read(); got != "STOPPING=1" {
		t.Errorf("got %q, want STOPPING=1", got)
	}
}
