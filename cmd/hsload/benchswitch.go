package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"

	"hsops/internal/cli"
	"hsops/internal/config"
	"hsops/internal/cutover"
	"hsops/internal/gen"
	"hsops/internal/load"
	"hsops/internal/pgcluster"
	"hsops/internal/proc"
)

func newBenchSwitchCmd(ctx context.Context, stdout io.Writer) *cobra.Command {
	var o benchSwitchOptions
	cmd := &cobra.Command{
		Use:   "bench-switch [--events 1000000] [--clients 16] [--postgres-url URL] [--work DIR]",
		Short: "Measure port_db --switch-config: the downtime and the rows of the final port, under load",
		Long: `bench-switch generates (or reuses, in --work, or --source) an engine SQLite
database with the given number of messages, starts the homeserver on a copy of
it, has --clients clients send messages through the client API while the
switch's pre-copy runs, stops them when the switch stops the homeserver, and
reports the switch's phases, the rows its final port moved, the downtime
measured (from the stop to the homeserver healthy on PostgreSQL), the
messages sent meanwhile and the load average.

--postgres-url is a role that may create databases; without it a throwaway
cluster is started from the initdb and pg_ctl on the machine.`,
		Args: cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return benchSwitch(ctx, stdout, o) },
	}
	f := cmd.Flags()
	f.IntVar(&o.events, "events", 1000000, "messages in the generated database")
	f.IntVar(&o.clients, "clients", 16, "clients sending messages during the pre-copy")
	f.IntVar(&o.jobs, "jobs", 2, "port_db --jobs")
	f.StringVar(&o.work, "work", filepath.Join(os.TempDir(), "hsops-bench-switch"), "directory for the generated database (reused across runs) and the run")
	f.StringVar(&o.source, "source", "", "an engine SQLite database to start from (default: generated in --work)")
	f.StringVar(&o.pgURL, "postgres-url", os.Getenv(pgcluster.EnvURL), "PostgreSQL admin URL")
	f.StringVar(&o.homeserver, "homeserver", "", "the homeserver binary (default: next to hsload, then PATH)")
	f.StringVar(&o.verify, "verify", "full", "port_db --switch-verify: full or counts")
	f.BoolVar(&o.json, "json", false, "print the result as JSON")
	return cmd
}

type benchSwitchOptions struct {
	events, clients, jobs           int
	work, source, pgURL, homeserver string
	verify                          string
	json                            bool
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
}

func benchSwitch(ctx context.Context, stdout io.Writer, o benchSwitchOptions) error {
	hs, err := findBinary("homeserver", o.homeserver)
	if err != nil {
		return cli.Usagef("homeserver not found: build it next to hsload (go build -o bin/ ./cmd/...) or pass --homeserver")
	}
	if o.pgURL == "" {
		cluster, err := pgcluster.Start()
		if err != nil {
			return fmt.Errorf("no PostgreSQL: pass --postgres-url or install initdb/pg_ctl: %w", err)
		}
		defer cluster.Stop()
		o.pgURL = cluster.AdminURL()
	}
	if err := os.MkdirAll(o.work, 0o755); err != nil {
		return err
	}
	src := o.source
	if src == "" {
		if src, err = benchSource(ctx, stdout, o.work, o.events); err != nil {
			return err
		}
	}
	run := filepath.Join(o.work, "run")
	sup := &proc.Supervisor{Launcher: proc.Launcher{Homeserver: hs}, Timeout: 120 * time.Second, Kill: true}
	cfgPath := filepath.Join(run, "homeserver.yaml")
	if pl, err := proc.Discover(proc.Selection{Config: cfgPath}); err == nil {
		_ = sup.Stop(ctx, pl) // a run killed before
	}
	if err := os.RemoveAll(run); err != nil {
		return err
	}
	if err := os.MkdirAll(run, 0o755); err != nil {
		return err
	}
	res := benchSwitchResult{Events: o.events, Clients: o.clients, Verify: o.verify}
	fmt.Fprintf(stdout, "copying %s...\n", src)
	live := filepath.Join(run, "homeserver.db")
	if out, err := exec.CommandContext(ctx, "cp", src, live).CombinedOutput(); err != nil {
		return fmt.Errorf("copy the source: %v: %s", err, out)
	}
	if st, err := os.Stat(live); err == nil {
		res.SQLiteMB = float64(st.Size()) / 1e6
	}
	if out, err := exec.CommandContext(ctx, hs, "-c", cfgPath, "--generate-config", "--server-name", "example.org", "--report-stats", "no").CombinedOutput(); err != nil {
		return fmt.Errorf("generate the config: %v: %s", err, out)
	}
	port, err := freeLoopbackPort()
	if err != nil {
		return err
	}
	data, err := os.ReadFile(cfgPath)
	if err != nil {
		return err
	}
	text := strings.Replace(string(data), "port: 8008", fmt.Sprintf("port: %d", port), 1)
	text = strings.Replace(text, "bind_addresses: ['::1', '127.0.0.1']", "bind_addresses: ['127.0.0.1']", 1)
	if err := os.WriteFile(cfgPath, []byte(text), 0o600); err != nil {
		return err
	}
	pgConfig, err := benchTarget(ctx, o.pgURL, filepath.Join(run, "postgres.yaml"))
	if err != nil {
		return err
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return err
	}
	pl, err := proc.Discover(proc.Selection{Config: cfgPath})
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, "starting the homeserver on SQLite...")
	if err := sup.Start(ctx, pl); err != nil {
		return err
	}
	defer func() {
		if pl, err := proc.Discover(proc.Selection{Config: cfgPath}); err == nil {
			_ = sup.Stop(context.WithoutCancel(ctx), pl)
		}
	}()

	// The clients send until the switch stops the homeserver.
	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	var (
		wg  sync.WaitGroup
		rep *load.Report
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		rep, _ = load.Run(loadCtx, load.Params{URL: config.BaseURL(cfg.Listeners), SharedSecret: cfg.RegistrationSharedSecret,
			Users: o.clients * 2, Rooms: o.clients, Members: 4, Messages: 10_000_000, Concurrency: o.clients, Prefix: "bench"})
	}()
	t0 := time.Now()
	sw, err := cutover.Run(ctx, cutover.Options{SQLitePath: live, PostgresConfig: pgConfig, Config: cfgPath,
		Launcher: proc.Launcher{Homeserver: hs}, Timeout: 120 * time.Second, Jobs: o.jobs, BatchSize: 10000, Verify: o.verify,
		Progress: func(ev cutover.Event) {
			switch ev.Type {
			case "phase":
				if ev.Phase == cutover.PhaseStop {
					res.LoadAvg = loadAvg()
					stopLoad()
					wg.Wait()
				}
				fmt.Fprintf(stdout, "%7.1fs == %s\n", time.Since(t0).Seconds(), ev.Phase)
			case "pass", "process", "rollback":
				fmt.Fprintf(stdout, "%7.1fs    %s\n", time.Since(t0).Seconds(), ev.Message)
			}
		}})
	stopLoad()
	wg.Wait()
	res.LoadAvgAfter = loadAvg()
	res.Switch = sw
	if rep != nil {
		res.LoadError = rep.FirstError
		for _, ph := range rep.Phases {
			if ph.Name == "send" {
				res.SentDuring, res.SendErrors = ph.Requests, ph.Errors
			}
		}
	}
	if err != nil {
		return err
	}
	if o.json {
		return json.NewEncoder(stdout).Encode(res)
	}
	fmt.Fprintf(stdout, "\n%d messages (%.0f MB of SQLite), %d clients sending during the pre-copy (%d messages sent)\n",
		res.Events, res.SQLiteMB, res.Clients, res.SentDuring)
	if res.LoadError != "" {
		fmt.Fprintf(stdout, "the clients' first error: %s\n", res.LoadError)
	}
	for i, p := range sw.PreCopy {
		fmt.Fprintf(stdout, "pre-copy pass %d: snapshot %s %.1fs, %d rows, %.1fs in all\n", i+1, p.Snapshot.Method, float64(p.Snapshot.Millis)/1000, p.Rows, float64(p.Millis)/1000)
	}
	for _, p := range sw.Phases {
		fmt.Fprintf(stdout, "%-12s %8.2fs\n", p.Name, float64(p.Millis)/1000)
	}
	fmt.Fprintf(stdout, "final port: %d rows, verified: %s\ndowntime: %.2fs\nload average at the stop: %s; after: %s\n", sw.FinalRows, o.verify, sw.Downtime.Seconds(), res.LoadAvg, res.LoadAvgAfter)
	return nil
}

// benchSource is the generated database of n messages in work (made once).
func benchSource(ctx context.Context, stdout io.Writer, work string, n int) (string, error) {
	src := filepath.Join(work, fmt.Sprintf("source-%d.db", n))
	if _, err := os.Stat(src); err == nil {
		return src, nil
	}
	fmt.Fprintf(stdout, "generating %s (%d messages)...\n", src, n)
	tmp := src + ".tmp"
	_ = os.Remove(tmp)
	p := gen.Params{ServerName: "example.org", Users: max(n/1000, 50), Rooms: max(n/5000, 10), Messages: n, MembersPerRoom: 20, Backfilled: 10, Seed: 1}
	if _, err := generate(ctx, config.Database{Name: config.EngineSQLite, Args: map[string]string{"database": tmp}}, p, 0, nil); err != nil {
		return "", err
	}
	return src, os.Rename(tmp, src)
}

// benchTarget creates an empty database for the switch and writes its
// config.
func benchTarget(ctx context.Context, pgURL, path string) (string, error) {
	admin, err := pgx.Connect(ctx, pgURL)
	if err != nil {
		return "", err
	}
	defer admin.Close(ctx)
	name := "hsops_bench_switch"
	_, _ = admin.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name+" ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"); err != nil {
		return "", err
	}
	u, err := url.Parse(pgURL)
	if err != nil {
		return "", err
	}
	u.Path = "/" + name
	cc, err := pgx.ParseConfig(u.String())
	if err != nil {
		return "", err
	}
	var y strings.Builder
	fmt.Fprintf(&y, "server_name: example.org\ndatabase:\n  name: psycopg2\n  args:\n    host: %q\n    port: %d\n    user: %q\n    dbname: %q\n    sslmode: disable\n",
		cc.Host, cc.Port, cc.User, name)
	if cc.Password != "" {
		fmt.Fprintf(&y, "    password: %q\n", cc.Password)
	}
	return path, os.WriteFile(path, []byte(y.String()), 0o600)
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
