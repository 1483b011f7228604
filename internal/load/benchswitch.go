package load

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"hsops/internal/cli"
	"hsops/internal/config"
	"hsops/internal/cutover"
	"hsops/internal/db"
	"hsops/internal/pgcluster"
	"hsops/internal/proc"
)

// BenchSwitchOptions are hsload bench-switch's flags.
type BenchSwitchOptions struct {
	Events, Clients, Jobs           int
	Work, Source, PGURL, Homeserver string
	Verify                          string
	JSON                            bool
}

// benchSwitchResult is the outcome, also printed as JSON.
type benchSwitchResult struct {
	Events       int             `json:"events"`
	SQLiteMB     float64         `json:"sqlite_mb"`
	Clients      int             `json:"clients"`
	Verify       string          `json:"verify"`
	SentDuring   int             `json:"messages_sent_during_pre_copy"`
	SendErrors   int             `json:"send_errors"`
	LoadError    string          `json:"load_error,omitempty"`
	LoadAvg      string          `json:"loadavg_at_stop"`
	LoadAvgAfter string          `json:"loadavg_after"`
	Switch       *cutover.Result `json:"switch"`
	// WholeCounts is what a whole-table count of the tables the final port
	// moved rows into costs on each side (measured after the switch): the
	// reason the switch's verification does not make one.
	WholeCounts *wholeCounts `json:"whole_counts,omitempty"`
}

// wholeCounts times count(*) over whole tables on both sides.
type wholeCounts struct {
	Tables     int   `json:"tables"`
	Rows       int64 `json:"rows"`
	SQLiteMs   int64 `json:"sqlite_ms"`
	PostgresMs int64 `json:"postgres_ms"`
}

// countWhole times count(*) of tables on the SQLite file and the target.
func countWhole(ctx context.Context, sqlitePath, pgConfig string, tables []string) (*wholeCounts, error) {
	src, err := db.OpenSQLite(ctx, sqlitePath, db.Options{ReadOnly: true})
	if err != nil {
		return nil, err
	}
	defer src.Close()
	cfg, err := config.Load(pgConfig)
	if err != nil {
		return nil, err
	}
	target, err := cfg.MainDatabase()
	if err != nil {
		return nil, err
	}
	tgt, err := db.Open(ctx, target, db.Options{ReadOnly: true})
	if err != nil {
		return nil, err
	}
	defer tgt.Close()
	w := &wholeCounts{Tables: len(tables)}
	for _, side := range []*db.DB{src, tgt} {
		t0 := time.Now()
		for _, t := range tables {
			var n int64
			if err := side.QueryRowContext(ctx, "SELECT count(*) FROM "+db.QuoteIdent(t)).Scan(&n); err != nil {
				return nil, err
			}
			if side == src {
				w.Rows += n
			}
		}
		if side == src {
			w.SQLiteMs = time.Since(t0).Milliseconds()
		} else {
			w.PostgresMs = time.Since(t0).Milliseconds()
		}
	}
	return w, nil
}

// BenchSwitch measures port_db --switch-config under load (hsload
// bench-switch) and prints the result to stdout: a copy of the generated
// source served by the engine on SQLite, clients sending, then the switch,
// which stops the clients when it stops the homeserver.
func BenchSwitch(ctx context.Context, stdout io.Writer, o BenchSwitchOptions) error {
	hs, err := proc.FindEngine(o.Homeserver)
	if err != nil {
		return cli.Usagef("homeserver not found: build it next to hsload (go build -o bin/ ./cmd/...) or pass --homeserver")
	}
	if o.PGURL == "" {
		cluster, err := pgcluster.Start()
		if err != nil {
			return fmt.Errorf("no PostgreSQL: pass --postgres-url or install initdb/pg_ctl: %w", err)
		}
		defer cluster.Stop()
		o.PGURL = cluster.AdminURL()
	}
	if err := os.MkdirAll(o.Work, 0o755); err != nil {
		return err
	}
	b := &benchSwitch{o: o, hs: hs, stdout: stdout, run: filepath.Join(o.Work, "run"),
		res: benchSwitchResult{Events: o.Events, Clients: o.Clients, Verify: o.Verify}}
	b.sup = &proc.Supervisor{Launcher: proc.Launcher{Homeserver: hs}, Timeout: 120 * time.Second, Kill: true}
	b.cfgPath = filepath.Join(b.run, "homeserver.yaml")
	if err := b.prepare(ctx); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "starting the homeserver on SQLite...")
	defer b.stopHomeserver(ctx)
	if err := b.startHomeserver(ctx); err != nil {
		return err
	}
	sw, err := b.switchWhileSending(ctx)
	if err != nil {
		return err
	}
	var moved []string
	for t := range sw.FinalTables {
		moved = append(moved, t)
	}
	sort.Strings(moved)
	if b.res.WholeCounts, err = countWhole(ctx, b.live, b.pgConfig, moved); err != nil {
		return err
	}
	if o.JSON {
		return json.NewEncoder(stdout).Encode(b.res)
	}
	printBenchSwitch(stdout, b.res, o.Verify)
	return nil
}

// benchSwitch is one bench-switch run: its run directory with the live
// file and the configs, and the homeserver's supervisor.
type benchSwitch struct {
	o                            BenchSwitchOptions
	hs                           string
	stdout                       io.Writer
	sup                          *proc.Supervisor
	run, cfgPath, live, pgConfig string
	res                          benchSwitchResult
}

// prepare makes the run directory afresh (stopping a homeserver a killed
// run left), copies the generated source into it as the live file, and
// writes the homeserver's config (on a free loopback port) and the
// target's, an empty database.
func (b *benchSwitch) prepare(ctx context.Context) error {
	src := b.o.Source
	if src == "" {
		src = filepath.Join(b.o.Work, fmt.Sprintf("source-%d.db", b.o.Events))
		say := func(line string) { fmt.Fprintln(b.stdout, line) }
		if _, err := generateSQLite(ctx, src, 0, b.o.Events, say); err != nil {
			return err
		}
	}
	b.stopHomeserver(ctx) // a run killed before
	if err := os.RemoveAll(b.run); err != nil {
		return err
	}
	if err := os.MkdirAll(b.run, 0o755); err != nil {
		return err
	}
	fmt.Fprintf(b.stdout, "copying %s...\n", src)
	b.live = filepath.Join(b.run, "homeserver.db")
	if out, err := exec.CommandContext(ctx, "cp", src, b.live).CombinedOutput(); err != nil {
		return fmt.Errorf("copy the source: %v: %s", err, out)
	}
	if st, err := os.Stat(b.live); err == nil {
		b.res.SQLiteMB = float64(st.Size()) / 1e6
	}
	if err := b.writeConfig(ctx); err != nil {
		return err
	}
	b.pgConfig = filepath.Join(b.run, "postgres.yaml")
	return benchTarget(ctx, b.o.PGURL, b.pgConfig)
}

// writeConfig generates the homeserver's config, listening on a free
// loopback port.
func (b *benchSwitch) writeConfig(ctx context.Context) error {
	if out, err := exec.CommandContext(ctx, b.hs, "-c", b.cfgPath, "--generate-config", "--server-name", "example.org", "--report-stats", "no").CombinedOutput(); err != nil {
		return fmt.Errorf("generate the config: %v: %s", err, out)
	}
	port, err := freeLoopbackPort()
	if err != nil {
		return err
	}
	data, err := os.ReadFile(b.cfgPath)
	if err != nil {
		return err
	}
	text := strings.Replace(string(data), "port: 8008", fmt.Sprintf("port: %d", port), 1)
	text = strings.Replace(text, "bind_addresses: ['::1', '127.0.0.1']", "bind_addresses: ['127.0.0.1']", 1)
	return os.WriteFile(b.cfgPath, []byte(text), 0o600)
}

func (b *benchSwitch) startHomeserver(ctx context.Context) error {
	pl, err := proc.Discover(proc.Selection{Config: b.cfgPath})
	if err != nil {
		return err
	}
	return b.sup.Start(ctx, pl)
}

// stopHomeserver stops what runs on the run's config, if anything.
func (b *benchSwitch) stopHomeserver(ctx context.Context) {
	if pl, err := proc.Discover(proc.Selection{Config: b.cfgPath}); err == nil {
		_ = b.sup.Stop(context.WithoutCancel(ctx), pl)
	}
}

// switchWhileSending starts the clients and, once they send, the switch;
// the clients stop when the switch stops the homeserver. It records what
// the clients did and the switch's result in b.res.
func (b *benchSwitch) switchWhileSending(ctx context.Context) (*cutover.Result, error) {
	cfg, err := config.Load(b.cfgPath)
	if err != nil {
		return nil, err
	}
	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	var (
		wg      sync.WaitGroup
		rep     *Report
		once    sync.Once
		sending = make(chan struct{})
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer once.Do(func() { close(sending) })
		rep, _ = Run(loadCtx, Params{URL: config.BaseURL(cfg.Listeners), SharedSecret: cfg.RegistrationSharedSecret,
			Users: b.o.Clients * 2, Rooms: b.o.Clients, Members: 4, Messages: 10_000_000, Concurrency: b.o.Clients, Prefix: "bench",
			Begin: func(phase string) {
				if phase == "send" {
					once.Do(func() { close(sending) })
				}
			}})
	}()
	// The switch begins once the clients send (registering them, creating
	// and joining their rooms takes a while).
	fmt.Fprintf(b.stdout, "%d clients registering and joining their rooms...\n", b.o.Clients)
	select {
	case <-sending:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	t0 := time.Now()
	sw, err := cutover.Run(ctx, cutover.Options{SQLitePath: b.live, PostgresConfig: b.pgConfig, Config: b.cfgPath,
		Launcher: proc.Launcher{Homeserver: b.hs}, Timeout: 120 * time.Second, Jobs: b.o.Jobs, BatchSize: 10000, Verify: b.o.Verify,
		Progress: func(ev cutover.Event) {
			switch ev.Type {
			case "phase":
				if ev.Phase == cutover.PhaseStop {
					b.res.LoadAvg = loadAvg()
					stopLoad()
					wg.Wait()
				}
				fmt.Fprintf(b.stdout, "%7.1fs == %s\n", time.Since(t0).Seconds(), ev.Phase)
			case "pass", "process", "rollback":
				fmt.Fprintf(b.stdout, "%7.1fs    %s\n", time.Since(t0).Seconds(), ev.Message)
			}
		}})
	stopLoad()
	wg.Wait()
	b.res.LoadAvgAfter = loadAvg()
	b.res.Switch = sw
	if rep != nil {
		b.res.LoadError = rep.FirstError
		for _, ph := range rep.Phases {
			if ph.Name == "send" {
				b.res.SentDuring, b.res.SendErrors = ph.Requests, ph.Errors
			}
		}
	}
	return sw, err
}

// printBenchSwitch renders a bench-switch result.
func printBenchSwitch(w io.Writer, res benchSwitchResult, verify string) {
	sw := res.Switch
	fmt.Fprintf(w, "\n%d messages (%.0f MB of SQLite), %d clients sending during the pre-copy (%d messages sent)\n",
		res.Events, res.SQLiteMB, res.Clients, res.SentDuring)
	if res.LoadError != "" {
		fmt.Fprintf(w, "the clients' first error: %s\n", res.LoadError)
	}
	for i, p := range sw.PreCopy {
		fmt.Fprintf(w, "pre-copy pass %d: snapshot %s %.1fs, %d rows, %.1fs in all\n", i+1, p.Snapshot.Method, float64(p.Snapshot.Millis)/1000, p.Rows, float64(p.Millis)/1000)
	}
	for _, p := range sw.Phases {
		fmt.Fprintf(w, "%-12s %8.2fs\n", p.Name, float64(p.Millis)/1000)
	}
	fmt.Fprintf(w, "final port: %d rows, verified: %s\n", sw.FinalRows, verify)
	if fp := sw.FinalPort; fp != nil {
		fmt.Fprintf(w, "  pages checked: %s; verified: %s; re-copied tables kept (unchanged): %d\n", fp.PageCheck, fp.Verified, len(fp.Kept))
		for _, p := range fp.Phases {
			fmt.Fprintf(w, "  %-14s %8.2fs\n", p.Name, float64(p.Millis)/1000)
		}
		for _, p := range fp.Steps {
			fmt.Fprintf(w, "    checks: %-14s %8.2fs\n", p.Name, float64(p.Millis)/1000)
		}
	}
	fmt.Fprintf(w, "downtime: %.2fs\nload average at the stop: %s; after: %s\n", sw.Downtime.Seconds(), res.LoadAvg, res.LoadAvgAfter)
	if c := res.WholeCounts; c != nil {
		fmt.Fprintf(w, "for reference, count(*) of the %d tables the final port moved rows into (%d rows): SQLite %.2fs, PostgreSQL %.2fs\n",
			c.Tables, c.Rows, float64(c.SQLiteMs)/1000, float64(c.PostgresMs)/1000)
	}
}

// benchTarget creates an empty database for the switch and writes its
// config to path.
func benchTarget(ctx context.Context, pgURL, path string) error {
	admin, err := pgx.Connect(ctx, pgURL)
	if err != nil {
		return err
	}
	defer admin.Close(ctx)
	const name = "hsops_bench_switch"
	if err := createBenchDatabase(ctx, admin, name); err != nil {
		return err
	}
	dbc, err := databaseConfig(pgURL, name)
	if err != nil {
		return err
	}
	return writePostgresConfig(path, dbc)
}

func freeLoopbackPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func loadAvg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
