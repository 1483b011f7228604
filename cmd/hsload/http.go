package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"hsops/internal/cli"
	"hsops/internal/config"
	"hsops/internal/server"
)

// loadParams shape an HTTP load run.
type loadParams struct {
	URL          string
	SharedSecret string
	Users        int
	Rooms        int
	Members      int
	Messages     int
	Reads        int
	Searches     int
	Concurrency  int
	Prefix       string
}

func newHTTPCmd(ctx context.Context, stdout io.Writer) *cobra.Command {
	var (
		p       loadParams
		configs []string
		asJSON  bool
	)
	cmd := &cobra.Command{
		Use:   "http (--url URL --shared-secret S | --config homeserver.yaml) [--users N --rooms M --messages K --concurrency C]",
		Short: "Drive a running homeserver through its client API and report requests/s and latency percentiles",
		Long: `http registers N users (shared-secret registration), has them create M public
rooms and join them (--members per room), then sends K messages from
--concurrency clients at once, reads the rooms back through /messages
(--reads pages) and searches them (--searches), timing every request. It
prints, per kind of request, the count, errors, requests/s and the 50th, 90th
and 99th percentile and maximum latency. Any failed request makes the run
fail (exit 4).

--config reads the URL (the first HTTP listener) and the shared secret from
the homeserver's configuration.`,
		Args: cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := fromConfig(configs, &p.URL, &p.SharedSecret); err != nil {
				return err
			}
			switch {
			case p.SharedSecret == "":
				return cli.Usagef("--shared-secret (or --config with registration_shared_secret) is required")
			case p.Users < 1 || p.Rooms < 1 || p.Messages < 0 || p.Concurrency < 1:
				return cli.Usagef("--users, --rooms and --concurrency must be at least 1")
			}
			if p.Members < 1 || p.Members > p.Users {
				p.Members = p.Users
			}
			if p.Prefix == "" {
				b := make([]byte, 3)
				_, _ = rand.Read(b)
				p.Prefix = "load" + hex.EncodeToString(b)
			}
			rep, err := runLoad(ctx, p)
			if rep != nil {
				if asJSON {
					cli.NewJSONLines(stdout).Emit(rep)
				} else {
					rep.print(stdout)
				}
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&p.URL, "url", "", "the homeserver's client API base URL, e.g. http://127.0.0.1:8008")
	f.StringVar(&p.SharedSecret, "shared-secret", "", "registration_shared_secret of the homeserver")
	f.StringArrayVarP(&configs, "config", "c", nil, "homeserver config to read --url and --shared-secret from")
	f.IntVar(&p.Users, "users", 50, "users to register")
	f.IntVar(&p.Rooms, "rooms", 10, "rooms to create")
	f.IntVar(&p.Members, "members", 10, "members per room (at most --users)")
	f.IntVar(&p.Messages, "messages", 5000, "messages to send, spread over the rooms")
	f.IntVar(&p.Reads, "reads", 500, "/messages pages to read")
	f.IntVar(&p.Searches, "searches", 100, "/search requests")
	f.IntVar(&p.Concurrency, "concurrency", 16, "clients sending at once")
	f.StringVar(&p.Prefix, "prefix", "", "user name prefix (default: load + random)")
	f.BoolVar(&asJSON, "json", false, "print the report as JSON")
	return cmd
}

// fromConfig fills the base URL (the first HTTP listener) and, when
// secret is not nil, the registration shared secret from the homeserver
// configs, where the flags left them empty; the URL is required.
func fromConfig(configs []string, url, secret *string) error {
	if len(configs) > 0 && (*url == "" || (secret != nil && *secret == "")) {
		cfg, err := config.Load(configs...)
		if err != nil {
			return err
		}
		if *url == "" {
			*url = config.BaseURL(cfg.Listeners)
		}
		if secret != nil && *secret == "" {
			*secret = cfg.RegistrationSharedSecret
		}
	}
	if *url == "" {
		return cli.Usagef("--url (or --config with an HTTP listener) is required")
	}
	return nil
}

// phaseStats are the timings of one kind of request.
type phaseStats struct {
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

// loadReport is what a run measured.
type loadReport struct {
	URL         string       `json:"url"`
	Users       int          `json:"users"`
	Rooms       int          `json:"rooms"`
	Messages    int          `json:"messages"`
	Concurrency int          `json:"concurrency"`
	Phases      []phaseStats `json:"phases"`
	FirstError  string       `json:"first_error,omitempty"`
}

func (r *loadReport) print(w io.Writer) {
	fmt.Fprintf(w, "hsload http: %d users, %d rooms, %d messages against %s, %d clients at once\n", r.Users, r.Rooms, r.Messages, r.URL, r.Concurrency)
	fmt.Fprintf(w, "%-10s %9s %7s %9s %9s %9s %9s %9s\n", "request", "count", "errors", "req/s", "p50", "p90", "p99", "max")
	for _, p := range r.Phases {
		fmt.Fprintf(w, "%-10s %9d %7d %9.1f %7.1fms %7.1fms %7.1fms %7.1fms\n", p.Name, p.Requests, p.Errors, p.PerSec, p.P50ms, p.P90ms, p.P99ms, p.MaxMs)
	}
	if r.FirstError != "" {
		fmt.Fprintf(w, "first error: %s\n", r.FirstError)
	}
}

// loader is a client of one homeserver.
type loader struct {
	base   string
	client *http.Client
	first  atomic.Value
}

type apiError struct {
	Status int
	Body   string
}

func (e *apiError) Error() string {
	return fmt.Sprintf("HTTP %d: %s", e.Status, strings.TrimSpace(e.Body))
}

// do sends a request and decodes a 200 answer into out.
func (l *loader) do(ctx context.Context, method, path, token string, body, out any) error {
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, l.base+path, rd)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := l.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return &apiError{Status: resp.StatusCode, Body: string(data)}
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}

// phase runs n requests with up to c at once and times each.
func (l *loader) phase(ctx context.Context, name string, n, c int, req func(ctx context.Context, i int) error) phaseStats {
	st := phaseStats{Name: name}
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
					l.first.CompareAndSwap("", fmt.Sprintf("%s #%d: %v", name, i, err))
				}
			}
		}
	)
	for w := 0; w < min(c, n); w++ {
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

// errLoadFailed means requests failed during a run.
var errLoadFailed = errors.New("requests failed")

func runLoad(ctx context.Context, p loadParams) (*loadReport, error) {
	l := &loader{
		base: strings.TrimRight(p.URL, "/"),
		client: &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{
			MaxIdleConns: p.Concurrency * 2, MaxIdleConnsPerHost: p.Concurrency * 2, IdleConnTimeout: 30 * time.Second,
		}},
	}
	l.first.Store("")
	rep := &loadReport{URL: p.URL, Users: p.Users, Rooms: p.Rooms, Messages: p.Messages, Concurrency: p.Concurrency}
	add := func(st phaseStats) bool {
		rep.Phases = append(rep.Phases, st)
		return st.Errors == 0
	}
	tokens := make([]string, p.Users)
	users := make([]string, p.Users)
	ok := add(l.phase(ctx, "register", p.Users, p.Concurrency, func(ctx context.Context, i int) error {
		name := fmt.Sprintf("%s-%d", p.Prefix, i)
		var n struct {
			Nonce string `json:"nonce"`
		}
		if err := l.do(ctx, "GET", "/_synapse/admin/v1/register", "", nil, &n); err != nil {
			return err
		}
		var out struct {
			UserID      string `json:"user_id"`
			AccessToken string `json:"access_token"`
		}
		err := l.do(ctx, "POST", "/_synapse/admin/v1/register", "", map[string]any{
			"nonce": n.Nonce, "username": name, "password": "load-" + name, "admin": false,
			"mac": server.RegistrationMAC(p.SharedSecret, n.Nonce, name, "load-"+name, false),
		}, &out)
		tokens[i], users[i] = out.AccessToken, out.UserID
		return err
	}))
	rooms := make([]string, p.Rooms)
	if ok {
		ok = add(l.phase(ctx, "createRoom", p.Rooms, p.Concurrency, func(ctx context.Context, i int) error {
			var out struct {
				RoomID string `json:"room_id"`
			}
			err := l.do(ctx, "POST", "/_matrix/client/v3/createRoom", tokens[i%p.Users], map[string]any{
				"preset": "public_chat", "name": fmt.Sprintf("%s room %d", p.Prefix, i), "topic": "load test",
			}, &out)
			rooms[i] = out.RoomID
			return err
		}))
	}
	// Room r's members are users r, r+1, ... (mod N), the creator first.
	member := func(r, k int) int { return (r + k) % p.Users }
	if ok {
		joins := p.Rooms * (p.Members - 1)
		ok = add(l.phase(ctx, "join", joins, p.Concurrency, func(ctx context.Context, i int) error {
			r, k := i/(p.Members-1), i%(p.Members-1)+1
			return l.do(ctx, "POST", "/_matrix/client/v3/rooms/"+url.PathEscape(rooms[r])+"/join", tokens[member(r, k)], map[string]any{}, nil)
		}))
	}
	words := []string{"upgrade", "database", "schema", "rollback", "postgres", "sqlite", "background", "update", "server", "matrix", "running", "snapshot"}
	if ok {
		ok = add(l.phase(ctx, "send", p.Messages, p.Concurrency, func(ctx context.Context, i int) error {
			r := i % p.Rooms
			u := member(r, (i/p.Rooms)%p.Members)
			body := fmt.Sprintf("message %d about the %s and the %s", i, words[i%len(words)], words[(i/7)%len(words)])
			return l.do(ctx, "PUT", fmt.Sprintf("/_matrix/client/v3/rooms/%s/send/m.room.message/%s-%d", url.PathEscape(rooms[r]), p.Prefix, i),
				tokens[u], map[string]any{"msgtype": "m.text", "body": body}, nil)
		}))
	}
	if ok {
		ok = add(l.phase(ctx, "messages", p.Reads, p.Concurrency, func(ctx context.Context, i int) error {
			r := i % p.Rooms
			var page struct {
				Chunk []json.RawMessage `json:"chunk"`
			}
			err := l.do(ctx, "GET", "/_matrix/client/v3/rooms/"+url.PathEscape(rooms[r])+"/messages?dir=b&limit=20", tokens[member(r, i%p.Members)], nil, &page)
			if err == nil && len(page.Chunk) == 0 {
				err = fmt.Errorf("empty page of room %s", rooms[r])
			}
			return err
		}))
	}
	if ok {
		ok = add(l.phase(ctx, "search", p.Searches, p.Concurrency, func(ctx context.Context, i int) error {
			return l.do(ctx, "POST", "/_matrix/client/v3/search", tokens[i%p.Users], map[string]any{
				"search_categories": map[string]any{"room_events": map[string]any{"search_term": words[i%len(words)]}},
			}, nil)
		}))
	}
	if first, _ := l.first.Load().(string); first != "" {
		rep.FirstError = first
	}
	if err := ctx.Err(); err != nil {
		return rep, err
	}
	if !ok {
		return rep, fmt.Errorf("%w: %s", errLoadFailed, rep.FirstError)
	}
	return rep, nil
}
