package load

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"hsops/internal/fault"
	"hsops/internal/server"
)

// Params shape a load run.
type Params struct {
	// URL is the client API's base URL.
	URL          string
	SharedSecret string
	Users        int
	Rooms        int
	// Members is the number of users in each room (at most Users).
	Members  int
	Messages int
	// Reads is the number of /messages pages read, Searches of searches.
	Reads    int
	Searches int
	// Concurrency is the number of clients sending at once.
	Concurrency int
	// Prefix names the users: <prefix>-<i>, password load-<prefix>-<i>
	// ("load" and random letters when empty).
	Prefix string
	// Begin, when set, is called as each phase begins, with its name.
	Begin func(phase string)
}

// Phase is the timing of one kind of request.
type Phase struct {
	Name     string  `json:"name"`
	Requests int     `json:"requests"`
	Errors   int     `json:"errors"`
	Seconds  float64 `json:"seconds"`
	PerSec   float64 `json:"requests_per_second"`
	P50ms    float64 `json:"p50_ms"`
	P90ms    float64 `json:"p90_ms"`
	P99ms    float64 `json:"p99_ms"`
	MaxMs    float64 `json:"max_ms"`
}

// Report is what a run measured.
type Report struct {
	URL         string  `json:"url"`
	Users       int     `json:"users"`
	Rooms       int     `json:"rooms"`
	Messages    int     `json:"messages"`
	Concurrency int     `json:"concurrency"`
	Phases      []Phase `json:"phases"`
	FirstError  string  `json:"first_error,omitempty"`
}

// ErrRequestsFailed means requests failed during a run.
var ErrRequestsFailed = fault.New(fault.Failed, "requests failed", "")

// words are what the messages talk about (and what the searches look for).
var words = []string{"upgrade", "database", "schema", "rollback", "postgres", "sqlite", "background", "update", "server", "matrix", "running", "snapshot"}

// Run makes the load of p, phase after phase (register, createRoom, join,
// send, messages, search); a phase with a failed request ends the run with
// ErrRequestsFailed. The report holds the phases that ran, also on error.
func Run(ctx context.Context, p Params) (*Report, error) {
	if p.Users < 1 || p.Rooms < 1 || p.Concurrency < 1 {
		return nil, fmt.Errorf("a load run needs at least one user, one room and one client")
	}
	if p.Members < 1 || p.Members > p.Users {
		p.Members = p.Users
	}
	if p.Prefix == "" {
		b := make([]byte, 3)
		_, _ = rand.Read(b)
		p.Prefix = "load" + hex.EncodeToString(b)
	}
	r := &runner{p: p, tokens: make([]string, p.Users), rooms: make([]string, p.Rooms), c: &client{
		base: strings.TrimRight(p.URL, "/"),
		http: &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{
			MaxIdleConns: p.Concurrency * 2, MaxIdleConnsPerHost: p.Concurrency * 2, IdleConnTimeout: 30 * time.Second,
		}},
	}}
	r.c.first.Store("")
	rep := &Report{URL: p.URL, Users: p.Users, Rooms: p.Rooms, Messages: p.Messages, Concurrency: p.Concurrency}
	ok := true
	for _, ph := range []struct {
		name string
		n    int
		req  func(ctx context.Context, i int) error
	}{
		{"register", p.Users, r.register},
		{"createRoom", p.Rooms, r.createRoom},
		{"join", p.Rooms * (p.Members - 1), r.join},
		{"send", p.Messages, r.send},
		{"messages", p.Reads, r.read},
		{"search", p.Searches, r.search},
	} {
		if p.Begin != nil {
			p.Begin(ph.name)
		}
		st := r.c.phase(ctx, ph.name, ph.n, p.Concurrency, ph.req)
		rep.Phases = append(rep.Phases, st)
		if ok = st.Errors == 0; !ok {
			break
		}
	}
	if first, _ := r.c.first.Load().(string); first != "" {
		rep.FirstError = first
	}
	if err := ctx.Err(); err != nil {
		return rep, err
	}
	if !ok {
		return rep, fmt.Errorf("%w: %s", ErrRequestsFailed, rep.FirstError)
	}
	return rep, nil
}

// runner makes the requests of a run: request i of each phase.
type runner struct {
	c      *client
	p      Params
	tokens []string
	rooms  []string
}

// member is the k-th member of room r: users r, r+1, ... (mod N), the
// creator first.
func (r *runner) member(room, k int) int { return (room + k) % r.p.Users }

func (r *runner) register(ctx context.Context, i int) error {
	var err error
	r.tokens[i], err = r.c.register(ctx, r.p.SharedSecret, fmt.Sprintf("%s-%d", r.p.Prefix, i))
	return err
}

func (r *runner) createRoom(ctx context.Context, i int) error {
	var out struct {
		RoomID string `json:"room_id"`
	}
	err := r.c.do(ctx, "POST", "/_matrix/client/v3/createRoom", r.tokens[i%r.p.Users], map[string]any{
		"preset": "public_chat", "name": fmt.Sprintf("%s room %d", r.p.Prefix, i), "topic": "load test",
	}, &out)
	r.rooms[i] = out.RoomID
	return err
}

func (r *runner) join(ctx context.Context, i int) error {
	room, k := i/(r.p.Members-1), i%(r.p.Members-1)+1
	return r.c.do(ctx, "POST", "/_matrix/client/v3/rooms/"+url.PathEscape(r.rooms[room])+"/join", r.tokens[r.member(room, k)], map[string]any{}, nil)
}

func (r *runner) send(ctx context.Context, i int) error {
	room := i % r.p.Rooms
	u := r.member(room, (i/r.p.Rooms)%r.p.Members)
	body := fmt.Sprintf("message %d about the %s and the %s", i, words[i%len(words)], words[(i/7)%len(words)])
	return r.c.do(ctx, "PUT", fmt.Sprintf("/_matrix/client/v3/rooms/%s/send/m.room.message/%s-%d", url.PathEscape(r.rooms[room]), r.p.Prefix, i),
		r.tokens[u], map[string]any{"msgtype": "m.text", "body": body}, nil)
}

func (r *runner) read(ctx context.Context, i int) error {
	room := i % r.p.Rooms
	var page struct {
		Chunk []json.RawMessage `json:"chunk"`
	}
	err := r.c.do(ctx, "GET", "/_matrix/client/v3/rooms/"+url.PathEscape(r.rooms[room])+"/messages?dir=b&limit=20", r.tokens[r.member(room, i%r.p.Members)], nil, &page)
	if err == nil && len(page.Chunk) == 0 {
		err = fmt.Errorf("empty page of room %s", r.rooms[room])
	}
	return err
}

func (r *runner) search(ctx context.Context, i int) error {
	return r.c.do(ctx, "POST", "/_matrix/client/v3/search", r.tokens[i%r.p.Users], map[string]any{
		"search_categories": map[string]any{"room_events": map[string]any{"search_term": words[i%len(words)]}},
	}, nil)
}

// register registers a user with the shared secret and returns its
// access token.
func (c *client) register(ctx context.Context, secret, name string) (string, error) {
	var n struct {
		Nonce string `json:"nonce"`
	}
	if err := c.do(ctx, "GET", "/_synapse/admin/v1/register", "", nil, &n); err != nil {
		return "", err
	}
	var out struct {
		AccessToken string `json:"access_token"`
	}
	err := c.do(ctx, "POST", "/_synapse/admin/v1/register", "", map[string]any{
		"nonce": n.Nonce, "username": name, "password": "load-" + name, "admin": false,
		"mac": server.RegistrationMAC(secret, n.Nonce, name, "load-"+name, false),
	}, &out)
	return out.AccessToken, err
}

// phase runs n requests with up to conc at once and times each.
func (c *client) phase(ctx context.Context, name string, n, conc int, req func(ctx context.Context, i int) error) Phase {
	st := Phase{Name: name}
	if n == 0 {
		return st
	}
	durations := make([]time.Duration, n)
	ran := make([]bool, n)
	var (
		next   atomic.Int64
		errs   atomic.Int64
		wg     sync.WaitGroup
		t0     = time.Now()
		worker = func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				start := time.Now()
				err := req(ctx, i)
				durations[i], ran[i] = time.Since(start), true
				if err != nil {
					errs.Add(1)
					c.first.CompareAndSwap("", fmt.Sprintf("%s #%d: %v", name, i, err))
				}
			}
		}
	)
	for w := 0; w < min(conc, n); w++ {
		wg.Add(1)
		go worker()
	}
	wg.Wait()
	elapsed := time.Since(t0)
	// Only the requests that ran count (a cancelled run stops early).
	var done []time.Duration
	for i, d := range durations {
		if ran[i] {
			done = append(done, d)
		}
	}
	st.Requests = len(done)
	st.Errors = int(errs.Load())
	st.Seconds = elapsed.Seconds()
	if len(done) == 0 {
		return st
	}
	st.PerSec = float64(len(done)) / elapsed.Seconds()
	st.P50ms, st.P90ms, st.P99ms, st.MaxMs = percentile(done, 0.50), percentile(done, 0.90), percentile(done, 0.99), percentile(done, 1)
	return st
}

// percentile is the nearest-rank q-th percentile of the durations, in
// milliseconds: the smallest value with at least q of them at or below it.
// It sorts ds.
func percentile(ds []time.Duration, q float64) float64 {
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	i := int(math.Ceil(q*float64(len(ds))-1e-9)) - 1
	i = max(0, min(i, len(ds)-1))
	return float64(ds[i].Microseconds()) / 1000
}
