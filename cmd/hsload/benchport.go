package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"

	"hsops/internal/cli"
	"hsops/internal/config"
	"hsops/internal/db"
	"hsops/internal/gen"
	"hsops/internal/pgcluster"
	"hsops/schema"
	"hsops/schema/engine"
)

func newBenchPortCmd(ctx context.Context, stdout, stderr io.Writer) *cobra.Command {
	var (
		events, jobs, batch int
		work, pgURL, portDB string
	)
	cmd := &cobra.Command{
		Use:   "bench-port [--events 1000000] [--postgres-url URL] [--work DIR]",
		Short: "Measure port_db on a generated database against a raw COPY of the same rows",
		Long: `bench-port generates (or reuses, in --work) an engine SQLite database with the
given number of messages and everything that goes with them, ports it with the
port_db binary (next to hsload, or on PATH) into a new PostgreSQL database,
recording time and peak memory, then loads the very same rows into another new
database with the same schema by a raw COPY FROM STDIN, table by table on one
connection: the reference. It reports rows/s, MB/s, peak memory and the ratio.

--postgres-url is a role that may create databases; without it a throwaway
cluster is started from the initdb and pg_ctl on the machine.`,
		Args: cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return benchPort(ctx, stdout, stderr, events, jobs, batch, work, pgURL, portDB)
		},
	}
	f := cmd.Flags()
	f.IntVar(&events, "events", 1000000, "messages in the generated database")
	f.IntVar(&jobs, "jobs", 2, "port_db --jobs")
	f.IntVar(&batch, "batch-size", 10000, "port_db --batch-size")
	f.StringVar(&work, "work", filepath.Join(os.TempDir(), "hsops-bench-port"), "directory for the generated database (reused across runs)")
	f.StringVar(&pgURL, "postgres-url", os.Getenv(pgcluster.EnvURL), "PostgreSQL admin URL")
	// The rules, not this machine's values (--help, docs).
	f.Lookup("work").DefValue = filepath.Join("$TMPDIR", "hsops-bench-port")
	f.Lookup("postgres-url").DefValue = "$" + pgcluster.EnvURL
	f.StringVar(&portDB, "port-db", "", "the port_db binary (default: next to hsload, then PATH)")
	return cmd
}

func findBinary(name, given string) (string, error) {
	if given != "" {
		return given, nil
	}
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return exec.LookPath(name)
}

// benchResult is the outcome, also printed as JSON.
type benchResult struct {
	Events       int     `json:"events"`
	Rows         int64   `json:"rows"`
	Bytes        int64   `json:"bytes"`
	PortSeconds  float64 `json:"port_seconds"`
	PortRowsPerS float64 `json:"port_rows_per_s"`
	PortMBPerS   float64 `json:"port_mb_per_s"`
	PeakRSSMB    float64 `json:"port_peak_rss_mb"`
	CopySeconds  float64 `json:"raw_copy_seconds"`
	CopyRowsPerS float64 `json:"raw_copy_rows_per_s"`
	Ratio        float64 `json:"ratio"`
	SQLiteMB     float64 `json:"sqlite_file_mb"`
	GenerateSecs float64 `json:"generate_seconds,omitempty"`
	Jobs         int     `json:"jobs"`
	BatchSize    int     `json:"batch_size"`
}

func benchPort(ctx context.Context, stdout, stderr io.Writer, events, jobs, batch int, work, pgURL, portDB string) error {
	bin, err := findBinary("port_db", portDB)
	if err != nil {
		return cli.Usagef("port_db not found: build it next to hsload (go build -o bin/ ./cmd/...) or pass --port-db")
	}
	if pgURL == "" {
		cluster, err := pgcluster.Start()
		if err != nil {
			return fmt.Errorf("no PostgreSQL: pass --postgres-url or install initdb/pg_ctl: %w", err)
		}
		defer cluster.Stop()
		pgURL = cluster.AdminURL()
	}
	if err := os.MkdirAll(work, 0o755); err != nil {
		return err
	}
	res := benchResult{Events: events, Jobs: jobs, BatchSize: batch}
	src := filepath.Join(work, fmt.Sprintf("source-%d.db", events))
	if _, err := os.Stat(src); err != nil {
		fmt.Fprintf(stdout, "generating %s (%d messages)...\n", src, events)
		t0 := time.Now()
		tmp := src + ".tmp"
		_ = os.Remove(tmp)
		p := gen.Params{ServerName: "example.org", Users: max(events/1000, 50), Rooms: max(events/5000, 10), Messages: events, MembersPerRoom: 20, Backfilled: 10, Seed: 1}
		if _, err := generate(ctx, config.Database{Name: config.EngineSQLite, Args: map[string]string{"database": tmp}}, p, 0, nil); err != nil {
			return err
		}
		if err := os.Rename(tmp, src); err != nil {
			return err
		}
		res.GenerateSecs = time.Since(t0).Seconds()
	}
	if st, err := os.Stat(src); err == nil {
		res.SQLiteMB = float64(st.Size()) / 1e6
	}

	admin, err := pgx.Connect(ctx, pgURL)
	if err != nil {
		return err
	}
	defer admin.Close(ctx)
	newDB := func(name string) (config.Database, error) {
		_, _ = admin.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
		if _, err := admin.Exec(ctx, "CREATE DATABASE "+name+" ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"); err != nil {
			return config.Database{}, err
		}
		u, _ := url.Parse(pgURL)
		u.Path = "/" + name
		cc, err := pgx.ParseConfig(u.String())
		if err != nil {
			return config.Database{}, err
		}
		args := map[string]string{"host": cc.Host, "port": fmt.Sprint(cc.Port), "user": cc.User, "dbname": name, "sslmode": "disable"}
		if cc.Password != "" {
			args["password"] = cc.Password
		}
		return config.Database{Label: "master", Name: config.EnginePostgres, Args: args, DataStores: []string{"main", "state"}}, nil
	}
	ported, err := newDB("hsops_bench_ported")
	if err != nil {
		return err
	}
	cfgPath := filepath.Join(work, "pg.yaml")
	var y strings.Builder
	y.WriteString("server_name: example.org\ndatabase:\n  name: psycopg2\n  args:\n")
	for _, k := range []string{"host", "port", "user", "password", "dbname", "sslmode"} {
		if v, ok := ported.Args[k]; ok {
			fmt.Fprintf(&y, "    %s: %q\n", k, v)
		}
	}
	if err := os.WriteFile(cfgPath, []byte(y.String()), 0o600); err != nil {
		return err
	}

	fmt.Fprintf(stdout, "porting with %s --jobs %d --batch-size %d...\n", bin, jobs, batch)
	cmd := exec.CommandContext(ctx, bin, "--sqlite-database", src, "--postgres-config", cfgPath, "--jobs", fmt.Sprint(jobs), "--batch-size", fmt.Sprint(batch), "--json")
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = stderr
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return err
	}
	var summary struct {
		Result struct {
			Rows  int64 `json:"rows"`
			Bytes int64 `json:"bytes"`
			Ms    int64 `json:"ms"`
		} `json:"result"`
	}
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	found := false
	for sc.Scan() {
		if strings.Contains(sc.Text(), `"event":"summary"`) {
			if err := json.Unmarshal(sc.Bytes(), &summary); err != nil {
				return fmt.Errorf("port_db's summary: %w", err)
			}
			found = true
		}
	}
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("port_db: %w", err)
	}
	if !found || summary.Result.Rows == 0 {
		return fmt.Errorf("port_db printed no summary with rows: nothing to measure")
	}
	wall := time.Since(t0)
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		res.PeakRSSMB = float64(ru.Maxrss) / 1024
	}
	res.Rows, res.Bytes = summary.Result.Rows, summary.Result.Bytes
	res.PortSeconds = wall.Seconds()
	res.PortRowsPerS = float64(res.Rows) / res.PortSeconds
	res.PortMBPerS = float64(res.Bytes) / 1e6 / res.PortSeconds

	fmt.Fprintln(stdout, "raw COPY of the same rows into the same schema...")
	copySecs, copyRows, err := rawCopy(ctx, ported, newDB)
	if err != nil {
		return err
	}
	res.CopySeconds = copySecs
	res.CopyRowsPerS = float64(copyRows) / copySecs
	res.Ratio = res.PortRowsPerS / res.CopyRowsPerS
	if copyRows != res.Rows {
		fmt.Fprintf(stdout, "note: the raw COPY loaded %d rows, the port %d\n", copyRows, res.Rows)
	}
	fmt.Fprintf(stdout, "\n%d messages, %d rows, %.0f MB of values (SQLite file %.0f MB)\n", events, res.Rows, float64(res.Bytes)/1e6, res.SQLiteMB)
	fmt.Fprintf(stdout, "port_db:  %6.1f s  %9.0f rows/s  %6.1f MB/s  peak RSS %.0f MB\n", res.PortSeconds, res.PortRowsPerS, res.PortMBPerS, res.PeakRSSMB)
	fmt.Fprintf(stdout, "raw COPY: %6.1f s  %9.0f rows/s\n", res.CopySeconds, res.CopyRowsPerS)
	fmt.Fprintf(stdout, "ratio (port_db / raw COPY throughput): %.2f\n", res.Ratio)
	data, _ := json.Marshal(res)
	fmt.Fprintln(stdout, string(data))
	return nil
}

// rawCopy dumps every non-empty table of the ported database with COPY TO,
// then times loading the same rows with COPY FROM STDIN into a new database
// holding the same schema (created by the schema engine), one table after
// the other on one connection.
func rawCopy(ctx context.Context, ported config.Database, newDB func(string) (config.Database, error)) (float64, int64, error) {
	src, err := db.Open(ctx, ported, db.Options{})
	if err != nil {
		return 0, 0, err
	}
	defer src.Close()
	tables, err := src.Tables(ctx, src)
	if err != nil {
		return 0, 0, err
	}
	skip := map[string]bool{"schema_version": true, "schema_compat_version": true, "applied_schema_deltas": true,
		"applied_module_schemas": true, "background_updates": true, "hsops_engine": true, "port_from_sqlite3": true, "hsops_port": true, "hsops_port_tables": true}
	dumps := map[string][]byte{}
	conn, err := src.Conn(ctx)
	if err != nil {
		return 0, 0, err
	}
	err = conn.Raw(func(dc any) error {
		pc := dc.(interface{ Conn() *pgx.Conn }).Conn()
		for _, t := range tables {
			if skip[t] {
				continue
			}
			var buf bytes.Buffer
			if _, err := pc.PgConn().CopyTo(ctx, &buf, "COPY "+db.QuoteIdent(t)+" TO STDOUT"); err != nil {
				return err
			}
			if buf.Len() > 0 {
				dumps[t] = buf.Bytes()
			}
		}
		return nil
	})
	conn.Close()
	if err != nil {
		return 0, 0, err
	}
	refCfg, err := newDB("hsops_bench_rawcopy")
	if err != nil {
		return 0, 0, err
	}
	ref, err := db.Open(ctx, refCfg, db.Options{})
	if err != nil {
		return 0, 0, err
	}
	defer ref.Close()
	if _, err := engine.Schema().Apply(ctx, ref, schema.Options{}); err != nil {
		return 0, 0, err
	}
	// Foreign-key order: the schema's referencing tables after the others.
	names := make([]string, 0, len(dumps))
	for t := range dumps {
		names = append(names, t)
	}
	sort.Slice(names, func(i, j int) bool {
		return fkRank(names[i]) < fkRank(names[j]) || (fkRank(names[i]) == fkRank(names[j]) && names[i] < names[j])
	})
	rconn, err := ref.Conn(ctx)
	if err != nil {
		return 0, 0, err
	}
	defer rconn.Close()
	var rows int64
	t0 := time.Now()
	err = rconn.Raw(func(dc any) error {
		pc := dc.(interface{ Conn() *pgx.Conn }).Conn()
		for _, t := range names {
			tag, err := pc.PgConn().CopyFrom(ctx, bytes.NewReader(dumps[t]), "COPY "+db.QuoteIdent(t)+" FROM STDIN")
			if err != nil {
				return fmt.Errorf("raw copy %s: %w", t, err)
			}
			rows += tag.RowsAffected()
		}
		return nil
	})
	return time.Since(t0).Seconds(), rows, err
}

// fkRank puts referenced tables first.
func fkRank(t string) int {
	switch t {
	case "users", "rooms", "refresh_tokens", "devices":
		return 0
	case "events":
		return 1
	}
	return 2
}
