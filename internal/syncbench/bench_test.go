package syncbench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"hsops/internal/config"
	"hsops/internal/db"
	"hsops/internal/dbtest"
	"hsops/internal/gen"
	"hsops/internal/pgtest"
	"hsops/internal/testbin"
	"hsops/schema"
	engineschema "hsops/schema/engine"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

var (
	buildOnce sync.Once
	binary    string
	buildErr  error
)

// homeserverBinary builds cmd/homeserver once per run.
func homeserverBinary(b *testing.B) string {
	b.Helper()
	buildOnce.Do(func() {
		dir, err := testbin.TempDir("hsops/cmd/homeserver")
		if err != nil {
			buildErr = fmt.Errorf("build the homeserver: %v", err)
			return
		}
		binary = filepath.Join(dir, "homeserver")
	})
	if buildErr != nil {
		b.Fatal(buildErr)
	}
	return binary
}

// engine is a homeserver process.
type engine struct {
	cmd  *exec.Cmd
	base string
}

// fill creates the database (schema 83) and generates users, rooms and
// messages in it; users are @user<i> with access tokens syt_gen_<i>.
func fill(b *testing.B, e db.Engine, p gen.Params) config.Database {
	b.Helper()
	tg := dbtest.New(b, e)
	ctx := context.Background()
	d, err := db.Open(ctx, tg.Config, db.Options{Create: true})
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	if _, err := engineschema.Schema().Apply(ctx, d, schema.Options{ServerName: "example.org"}); err != nil {
		b.Fatal(err)
	}
	p.Seed = 1
	if _, err := gen.Generate(ctx, d, p); err != nil {
		b.Fatal(err)
	}
	return tg.Config
}

// start runs the homeserver binary on dbc and waits until it is healthy.
func start(b *testing.B, dbc config.Database) *engine {
	b.Helper()
	dir := b.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	var dbYAML string
	if dbc.IsSQLite() {
		dbYAML = fmt.Sprintf("database:\n  name: sqlite3\n  args:\n    database: %s\n", dbc.SQLitePath())
	} else {
		dbYAML = pgtest.Database{Config: dbc}.YAML()
	}
	cfg := filepath.Join(dir, "homeserver.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`server_name: example.org
pid_file: %s/homeserver.pid
listeners:
  - port: %d
    type: http
    bind_addresses: ['127.0.0.1']
    resources: [{names: [client]}]
%s`, dir, port, dbYAML)), 0o600); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(homeserverBinary(b), "-c", cfg)
	cmd.Dir = dir // its log (homeserver.log) goes to the working directory
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	e := &engine{cmd: cmd, base: fmt.Sprintf("http://127.0.0.1:%d", port)}
	b.Cleanup(e.stop)
	for i := 0; ; i++ {
		resp, err := http.Get(e.base + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return e
			}
		}
		if i > 600 {
			b.Fatalf("the homeserver did not become healthy: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (e *engine) stop() {
	if e.cmd.Process == nil || e.cmd.ProcessState != nil {
		return
	}
	_ = e.cmd.Process.Signal(syscall.SIGTERM)
	_ = e.cmd.Wait()
}

// rssKB is the engine's resident memory.
func (e *engine) rssKB(b *testing.B) int64 {
	b.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", e.cmd.Process.Pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			return n
		}
	}
	b.Fatal("no VmRSS")
	return 0
}

// cpuMS is the engine's CPU time so far (user and system).
func (e *engine) cpuMS(b *testing.B) float64 {
	b.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", e.cmd.Process.Pid))
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the command name (which is in parentheses).
	f := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+2:]))
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) * 10 // 100 clock ticks a second
}

var httpClient = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4096, MaxConnsPerHost: 0}}

// syncBody is what the benchmarks read of a /sync.
type syncBody struct {
	NextBatch string `json:"next_batch"`
	Rooms     struct {
		Join map[string]struct {
			Timeline struct {
				Events []struct {
					Content struct {
						Body string `json:"body"`
					} `json:"content"`
				} `json:"events"`
			} `json:"timeline"`
		} `json:"join"`
	} `json:"rooms"`
}

func call(ctx context.Context, method, u, token string, body any) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		data, _ := json.Marshal(body)
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := httpClient.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != 200 {
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return nil, fmt.Errorf("%s %s: %d %s", method, u, resp.StatusCode, data)
	}
	return resp, nil
}

func doSync(ctx context.Context, base, token, query string) (syncBody, int, error) {
	var out syncBody
	resp, err := call(ctx, "GET", base+"/_matrix/client/v3/sync?"+query, token, nil)
	if err != nil {
		return out, 0, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return out, 0, err
	}
	return out, len(data), json.Unmarshal(data, &out)
}

func token(i int) string { return "syt_gen_" + strconv.Itoa(i) }

func percentile(d []time.Duration, p float64) float64 {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	rank := int(p/100*float64(len(s))+0.999999) - 1
	return float64(s[max(rank, 0)].Microseconds()) / 1000
}

func engines(b *testing.B, body func(b *testing.B, e db.Engine)) {
	for _, e := range []db.Engine{db.SQLite, db.Postgres} {
		b.Run(string(e), func(b *testing.B) { body(b, e) })
	}
}

// BenchmarkSyncWake: 100 clients long-poll /sync in a room; another
// member sends b.N messages one after another. For each message, the
// latency from the start of the send to each waiting client having the
// message, against the send's own latency (its response), in the same run.
func BenchmarkSyncWake(b *testing.B) {
	const waiters = 100
	engines(b, func(b *testing.B, e db.Engine) {
		dbc := fill(b, e, gen.Params{Users: waiters + 1, Rooms: 1, MembersPerRoom: waiters + 1, Messages: 100})
		eng := start(b, dbc)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var room string
		type receipt struct {
			msg int
			at  time.Time
		}
		got := make(chan receipt, waiters*4)
		errs := make(chan error, waiters)
		var wg sync.WaitGroup
		ready := make(chan struct{}, waiters)
		for w := 0; w < waiters; w++ {
			first, _, err := doSync(ctx, eng.base, token(w), "filter="+url.QueryEscape(`{"room":{"timeline":{"limit":1}}}`))
			if err != nil {
				b.Fatal(err)
			}
			for r := range first.Rooms.Join {
				room = r
			}
			wg.Add(1)
			go func(tok, since string) {
				defer wg.Done()
				ready <- struct{}{}
				for ctx.Err() == nil {
					s, _, err := doSync(ctx, eng.base, tok, "timeout=30000&since="+url.QueryEscape(since))
					if err != nil {
						if ctx.Err() == nil {
							errs <- err
						}
						return
					}
					at := time.Now()
					since = s.NextBatch
					for _, jr := range s.Rooms.Join {
						for _, ev := range jr.Timeline.Events {
							if n, ok := strings.CutPrefix(ev.Content.Body, "bench "); ok {
								i, _ := strconv.Atoi(n)
								got <- receipt{i, at}
							}
						}
					}
				}
			}(token(w), first.NextBatch)
		}
		for w := 0; w < waiters; w++ {
			<-ready
		}
		time.Sleep(200 * time.Millisecond) // every long-poll has reached the engine
		var sends, wakes []time.Duration
		cpu0 := eng.cpuMS(b)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			t0 := time.Now()
			resp, err := call(ctx, "PUT", fmt.Sprintf("%s/_matrix/client/v3/rooms/%s/send/m.room.message/b%d", eng.base, url.PathEscape(room), i),
				token(waiters), map[string]any{"msgtype": "m.text", "body": fmt.Sprintf("bench %d", i)})
			if err != nil {
				b.Fatal(err)
			}
			resp.Body.Close()
			sends = append(sends, time.Since(t0))
			for n := 0; n < waiters; {
				select {
				case r := <-got:
					if r.msg != i {
						b.Fatalf("a client received message %d while %d was awaited", r.msg, i)
					}
					wakes = append(wakes, r.at.Sub(t0))
					n++
				case err := <-errs:
					b.Fatal(err)
				case <-time.After(30 * time.Second):
					b.Fatalf("message %d: only %d of %d clients woke", i, n, waiters)
				}
			}
		}
		b.StopTimer()
		b.ReportMetric((eng.cpuMS(b)-cpu0)/float64(b.N), "engine-cpu-ms/msg")
		b.ReportMetric(percentile(sends, 50), "send-p50-ms")
		b.ReportMetric(percentile(sends, 99), "send-p99-ms")
		b.ReportMetric(percentile(wakes, 50), "recv-p50-ms")
		b.ReportMetric(percentile(wakes, 99), "recv-p99-ms")
		cancel()
		wg.Wait()
	})
}

// BenchmarkInitialSync: the initial sync (Synapse's default filter: 10
// events of timeline per room) of a user in 10 rooms of 1,000 messages.
func BenchmarkInitialSync(b *testing.B) {
	engines(b, func(b *testing.B, e db.Engine) {
		dbc := fill(b, e, gen.Params{Users: 10, Rooms: 10, MembersPerRoom: 10, Messages: 10_000})
		eng := start(b, dbc)
		ctx := context.Background()
		var size int
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			s, n, err := doSync(ctx, eng.base, token(0), "")
			if err != nil {
				b.Fatal(err)
			}
			if len(s.Rooms.Join) != 10 {
				b.Fatalf("%d rooms joined, want 10", len(s.Rooms.Join))
			}
			size = n
		}
		b.StopTimer()
		b.ReportMetric(float64(size)/1024, "KB/response")
	})
}

// BenchmarkLongPollMemory: the engine's resident memory idle (after every
// user's initial sync) and with 1,000 long-polls open, one per user.
func BenchmarkLongPollMemory(b *testing.B) {
	const polls = 1000
	engines(b, func(b *testing.B, e db.Engine) {
		dbc := fill(b, e, gen.Params{Users: polls, Rooms: 10, MembersPerRoom: 100, Messages: 1000})
		eng := start(b, dbc)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		since := make([]string, polls)
		for i := range since {
			s, _, err := doSync(ctx, eng.base, token(i), "")
			if err != nil {
				b.Fatal(err)
			}
			since[i] = s.NextBatch
		}
		time.Sleep(time.Second)
		idle := eng.rssKB(b)
		b.ResetTimer()
		var open float64
		for n := 0; n < b.N; n++ {
			pctx, pcancel := context.WithCancel(ctx)
			var wg sync.WaitGroup
			var returned atomic.Int64
			for i := 0; i < polls; i++ {
				wg.Add(1)
				go func(i int) {
					defer wg.Done()
					_, _, _ = doSync(pctx, eng.base, token(i), "timeout=60000&since="+url.QueryEscape(since[i]))
					returned.Add(1)
				}(i)
			}
			// Until the engine has read every sync once and holds them (the
			// resident size settles within a second or two).
			time.Sleep(3 * time.Second)
			open = float64(eng.rssKB(b))
			if n := returned.Load(); n > 0 {
				b.Fatalf("%d long-polls returned before their timeout with nothing to say", n)
			}
			pcancel()
			wg.Wait()
		}
		b.StopTimer()
		b.ReportMetric(float64(idle)/1024, "idle-MB")
		b.ReportMetric(open/1024, "1000polls-MB")
		b.ReportMetric((open-float64(idle))/polls, "KB/poll")
	})
}
