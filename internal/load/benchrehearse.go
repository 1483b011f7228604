package load

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"hsops/internal/config"
	"hsops/internal/db"
	"hsops/internal/gen"
	"hsops/internal/pgcluster"
)

// BenchRehearseOptions are hsload bench-rehearse's flags.
type BenchRehearseOptions struct {
	// UpdateDatabase is the update_database binary the rehearsal and the
	// real upgrade run.
	UpdateDatabase          string
	Events, Version, Rounds int
	// Engine is sqlite, postgres or both.
	Engine, Work, PGURL string
	WAL                 bool
}

// BenchRehearse measures update_database rehearse against a plain copy and
// the real upgrade (hsload bench-rehearse), printing to stdout.
func BenchRehearse(ctx context.Context, stdout, stderr io.Writer, o BenchRehearseOptions) error {
	b := &rehearseBench{ctx: ctx, out: stdout, errw: stderr, bin: o.UpdateDatabase, events: o.Events, version: o.Version, work: o.Work, rounds: max(o.Rounds, 1), wal: o.WAL}
	if err := os.MkdirAll(o.Work, 0o755); err != nil {
		return err
	}
	if o.Engine == "sqlite" || o.Engine == "both" {
		if err := b.sqlite(); err != nil {
			return err
		}
	}
	if o.Engine != "postgres" && o.Engine != "both" {
		return nil
	}
	pgURL := o.PGURL
	if pgURL == "" {
		cluster, err := pgcluster.Start()
		if err != nil {
			return fmt.Errorf("no PostgreSQL: pass --postgres-url or install initdb/pg_ctl: %w", err)
		}
		defer cluster.Stop()
		pgURL = cluster.AdminURL()
	}
	return b.postgres(pgURL)
}

type rehearseBench struct {
	ctx                     context.Context
	out, errw               io.Writer
	bin                     string
	events, version, rounds int
	work                    string
	wal                     bool
}

// rehearsalResult is what the bench reads of rehearse --json.
type rehearsalResult struct {
	Report struct {
		Databases []struct {
			Copy struct {
				Method    string `json:"method"`
				Bytes     int64  `json:"bytes"`
				Ms        int64  `json:"ms"`
				Tables    int    `json:"tables"`
				Rows      int64  `json:"rows"`
				DataMs    int64  `json:"data_ms"`
				RebuildMs int64  `json:"rebuild_ms"`
			} `json:"copy"`
		} `json:"databases"`
		BlockingMs   int64 `json:"blocking_ms"`
		BackgroundMs int64 `json:"background_ms"`
		PacedMs      int64 `json:"background_paced_ms"`
		Batches      int   `json:"background_batches"`
		Ms           int64 `json:"ms"`
		Passed       bool  `json:"passed"`
	} `json:"report"`
}

func (b *rehearseBench) params() gen.Params {
	return gen.Params{ServerName: "example.org", Users: max(b.events/1000, 50), Rooms: max(b.events/5000, 10), Messages: b.events, MembersPerRoom: 20, Backfilled: 10, Seed: 1, TxSize: 20000}
}

// rehearse runs update_database rehearse --json and reads its report.
func (b *rehearseBench) rehearse(cfg string, extra ...string) (rehearsalResult, float64, error) {
	var res rehearsalResult
	args := append([]string{"rehearse", "--database-config", cfg, "--json"}, extra...)
	cmd := exec.CommandContext(b.ctx, b.bin, args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return res, 0, err
	}
	cmd.Stderr = b.errw
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return res, 0, err
	}
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	found := false
	for sc.Scan() {
		if strings.Contains(sc.Text(), `"event":"rehearsal"`) {
			if err := json.Unmarshal(sc.Bytes(), &res); err != nil {
				return res, 0, fmt.Errorf("rehearse's report: %w", err)
			}
			found = true
		}
	}
	if err := cmd.Wait(); err != nil {
		return res, 0, fmt.Errorf("update_database rehearse: %w", err)
	}
	if !found || !res.Report.Passed || len(res.Report.Databases) == 0 {
		return res, 0, fmt.Errorf("update_database rehearse printed no passing report")
	}
	return res, time.Since(t0).Seconds(), nil
}

// upgrade runs the real upgrade with the binary: the schema phase, then
// the background updates, each timed.
func (b *rehearseBench) upgrade(cfg string) (schemaSecs, bgSecs float64, err error) {
	run := func(args ...string) (float64, error) {
		cmd := exec.CommandContext(b.ctx, b.bin, args...)
		cmd.Stdout, cmd.Stderr = io.Discard, b.errw
		t0 := time.Now()
		if err := cmd.Run(); err != nil {
			return 0, fmt.Errorf("update_database %s: %w", strings.Join(args, " "), err)
		}
		return time.Since(t0).Seconds(), nil
	}
	if schemaSecs, err = run("--database-config", cfg); err != nil {
		return 0, 0, err
	}
	bgSecs, err = run("background", "run", "--database-config", cfg)
	return schemaSecs, bgSecs, err
}

func (b *rehearseBench) report(engine, reference string, refSecs float64, r rehearsalResult, wall float64, schemaSecs, bgSecs float64) {
	rep := r.Report
	c := rep.Databases[0].Copy
	copySecs := float64(c.Ms) / 1000
	fmt.Fprintf(b.out, "\n%s, %d messages at schema %d, %.0f MB\n", engine, b.events, b.version, float64(c.Bytes)/1e6)
	fmt.Fprintf(b.out, "  %-40s %8.2f s\n", reference+" (reference)", refSecs)
	fmt.Fprintf(b.out, "  %-40s %8.2f s   ratio %.2f\n", "rehearsal's copy ("+c.Method+")", copySecs, copySecs/refSecs)
	fmt.Fprintf(b.out, "  %-40s %8.2f s   (real schema phase %.2f s, ratio %.2f)\n", "predicted downtime", float64(rep.BlockingMs)/1000, schemaSecs, float64(rep.BlockingMs)/1000/schemaSecs)
	fmt.Fprintf(b.out, "  %-40s %8.2f s   (real background run %.2f s, ratio %.2f); paced %.0f s in %d batches\n", "background, flat out",
		float64(rep.BackgroundMs)/1000, bgSecs, float64(rep.BackgroundMs)/1000/bgSecs, float64(rep.PacedMs)/1000, rep.Batches)
	fmt.Fprintf(b.out, "  %-40s %8.2f s\n", "whole rehearsal (wall)", wall)
	data, _ := json.Marshal(map[string]any{"engine": engine, "events": b.events, "schema_version": b.version, "bytes": c.Bytes,
		"reference": reference, "reference_s": refSecs, "copy_method": c.Method, "copy_s": copySecs, "copy_ratio": copySecs / refSecs,
		"predicted_downtime_s": float64(rep.BlockingMs) / 1000, "real_schema_s": schemaSecs,
		"predicted_background_s": float64(rep.BackgroundMs) / 1000, "real_background_s": bgSecs, "paced_background_s": float64(rep.PacedMs) / 1000,
		"rehearsal_wall_s": wall, "loadavg": loadAvg()})
	fmt.Fprintln(b.out, string(data))
}

func sqliteConfig(path, dbPath string) error {
	return os.WriteFile(path, []byte(fmt.Sprintf("server_name: example.org\ndatabase:\n  name: sqlite3\n  args:\n    database: %s\n", dbPath)), 0o600)
}

func (b *rehearseBench) sqlite() error {
	src := filepath.Join(b.work, fmt.Sprintf("source-%d-v%d.db", b.events, b.version))
	if _, err := os.Stat(src); err != nil {
		fmt.Fprintf(b.out, "generating %s (%d messages at schema %d)...\n", src, b.events, b.version)
		tmp := src + ".tmp"
		_ = os.Remove(tmp)
		if _, err := gen.Fill(b.ctx, config.Database{Name: config.EngineSQLite, Args: map[string]string{"database": tmp}}, b.version, b.params()); err != nil {
			return err
		}
		if err := os.Rename(tmp, src); err != nil {
			return err
		}
	}
	engine := "SQLite"
	if b.wal {
		engine = "SQLite in WAL mode"
		walSrc := strings.TrimSuffix(src, ".db") + "-wal.db"
		if _, err := os.Stat(walSrc); err != nil {
			tmp := walSrc + ".tmp"
			if err := copyFile(src, tmp); err != nil {
				return err
			}
			d, err := db.OpenSQLite(b.ctx, tmp, db.Options{})
			if err != nil {
				return err
			}
			_, err = d.ExecContext(b.ctx, "PRAGMA journal_mode = WAL")
			d.Close()
			if err != nil {
				return err
			}
			if err := os.Rename(tmp, walSrc); err != nil {
				return err
			}
		}
		src = walSrc
	}
	plain := filepath.Join(b.work, "plain-copy.db")
	defer os.Remove(plain)
	cfg := filepath.Join(b.work, "source.yaml")
	if err := sqliteConfig(cfg, src); err != nil {
		return err
	}
	realCfg := filepath.Join(b.work, "real.yaml")
	if err := sqliteConfig(realCfg, plain); err != nil {
		return err
	}
	for round := 1; round <= b.rounds; round++ {
		fmt.Fprintf(b.out, "%s, round %d: plain copy of the file, then the real upgrade of it...\n", engine, round)
		t0 := time.Now()
		if err := copyFile(src, plain); err != nil {
			return err
		}
		refSecs := time.Since(t0).Seconds()
		schemaSecs, bgSecs, err := b.upgrade(realCfg)
		if err != nil {
			return err
		}
		fmt.Fprintf(b.out, "%s, round %d: rehearsal...\n", engine, round)
		r, wall, err := b.rehearse(cfg)
		if err != nil {
			return err
		}
		b.report(fmt.Sprintf("%s (round %d)", engine, round), "file copy + fsync", refSecs, r, wall, schemaSecs, bgSecs)
	}
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func (b *rehearseBench) postgres(pgURL string) error {
	ctx := b.ctx
	admin, err := pgx.Connect(ctx, pgURL)
	if err != nil {
		return err
	}
	defer admin.Close(ctx)
	u, _ := url.Parse(pgURL)
	writeConfig := func(name string) (string, config.Database, error) {
		u2 := *u
		u2.Path = "/" + name
		cc, err := pgx.ParseConfig(u2.String())
		if err != nil {
			return "", config.Database{}, err
		}
		args := map[string]string{"host": cc.Host, "port": fmt.Sprint(cc.Port), "user": cc.User, "dbname": name, "sslmode": "disable"}
		if cc.Password != "" {
			args["password"] = cc.Password
		}
		var y strings.Builder
		y.WriteString("server_name: example.org\ndatabase:\n  name: psycopg2\n  args:\n")
		for _, k := range []string{"host", "port", "user", "password", "dbname", "sslmode"} {
			if v, ok := args[k]; ok {
				fmt.Fprintf(&y, "    %s: %q\n", k, v)
			}
		}
		path := filepath.Join(b.work, name+".yaml")
		return path, config.Database{Label: "master", Name: config.EnginePostgres, Args: args, DataStores: []string{"main", "state"}}, os.WriteFile(path, []byte(y.String()), 0o600)
	}
	// The source is kept across runs on a server that outlives them.
	src := fmt.Sprintf("hsops_bench_rehearse_%d_v%d", b.events, b.version)
	var exists bool
	if err := admin.QueryRow(ctx, "SELECT count(*) > 0 FROM pg_database WHERE datname = $1", src).Scan(&exists); err != nil {
		return err
	}
	srcCfg, _, err := writeConfig(src)
	if err != nil {
		return err
	}
	if !exists {
		fmt.Fprintf(b.out, "generating database %s (%d messages at schema %d)...\n", src, b.events, b.version)
		tmp := src + "_tmp"
		_, _ = admin.Exec(ctx, "DROP DATABASE IF EXISTS "+tmp+" WITH (FORCE)")
		if _, err := admin.Exec(ctx, "CREATE DATABASE "+tmp+" ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"); err != nil {
			return err
		}
		_, tmpDB, err := writeConfig(tmp)
		if err != nil {
			return err
		}
		if _, err := gen.Fill(ctx, tmpDB, b.version, b.params()); err != nil {
			return err
		}
		if _, err := admin.Exec(ctx, "ALTER DATABASE "+tmp+" RENAME TO "+src); err != nil {
			return err
		}
		if _, err := admin.Exec(ctx, "VACUUM"); err != nil {
			return err
		}
	}
	template := func(name string) (float64, error) {
		_, _ = admin.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
		t0 := time.Now()
		if _, err := admin.Exec(ctx, "CREATE DATABASE "+name+" TEMPLATE "+src); err != nil {
			return 0, err
		}
		return time.Since(t0).Seconds(), nil
	}
	const realDB = "hsops_bench_rehearse_real"
	defer admin.Exec(context.WithoutCancel(ctx), "DROP DATABASE IF EXISTS "+realDB+" WITH (FORCE)")
	realCfg, _, err := writeConfig(realDB)
	if err != nil {
		return err
	}
	for round := 1; round <= b.rounds; round++ {
		fmt.Fprintf(b.out, "PostgreSQL, round %d: CREATE DATABASE ... TEMPLATE, then the real upgrade of it...\n", round)
		refSecs, err := template(realDB)
		if err != nil {
			return err
		}
		schemaSecs, bgSecs, err := b.upgrade(realCfg)
		if err != nil {
			return err
		}
		if _, err := admin.Exec(ctx, "DROP DATABASE "+realDB); err != nil {
			return err
		}
		fmt.Fprintf(b.out, "PostgreSQL, round %d: rehearsal (nothing connected: the template copy)...\n", round)
		rTemplate, wallTemplate, err := b.rehearse(srcCfg)
		if err != nil {
			return err
		}
		fmt.Fprintf(b.out, "PostgreSQL, round %d: rehearsal with --snapshot-copy (as when the homeserver is connected)...\n", round)
		rSnap, wallSnap, err := b.rehearse(srcCfg, "--snapshot-copy")
		if err != nil {
			return err
		}
		name := fmt.Sprintf("PostgreSQL (round %d)", round)
		b.report(name, "CREATE DATABASE ... TEMPLATE", refSecs, rTemplate, wallTemplate, schemaSecs, bgSecs)
		b.report(name, "CREATE DATABASE ... TEMPLATE", refSecs, rSnap, wallSnap, schemaSecs, bgSecs)
		if c := rSnap.Report.Databases[0].Copy; c.DataMs > 0 {
			fmt.Fprintf(b.out, "  the snapshot copy: data %.2f s, keys and indexes %.2f s\n", float64(c.DataMs)/1000, float64(c.RebuildMs)/1000)
		}
		if secs, err := b.dumpRestore(srcCfg, src, admin); err == nil {
			fmt.Fprintf(b.out, "  pg_dump -Fd -j 4 | pg_restore -j 4, the same data (another reference): %.2f s; the snapshot copy's ratio to it %.2f\n",
				secs, float64(rSnap.Report.Databases[0].Copy.Ms)/1000/secs)
		} else {
			fmt.Fprintf(b.out, "  (pg_dump | pg_restore not measured: %v)\n", err)
		}
	}
	return nil
}

// dumpRestore times pg_dump in directory format and pg_restore, both with
// four jobs, into a new database: what a DBA would run to copy a database
// others are connected to.
func (b *rehearseBench) dumpRestore(_ string, src string, admin *pgx.Conn) (float64, error) {
	dump, err := exec.LookPath("pg_dump")
	if err != nil {
		return 0, err
	}
	restore, err := exec.LookPath("pg_restore")
	if err != nil {
		return 0, err
	}
	ctx := b.ctx
	const target = "hsops_bench_rehearse_restored"
	_, _ = admin.Exec(ctx, "DROP DATABASE IF EXISTS "+target+" WITH (FORCE)")
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+target+" TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'"); err != nil {
		return 0, err
	}
	defer admin.Exec(context.WithoutCancel(ctx), "DROP DATABASE IF EXISTS "+target+" WITH (FORCE)")
	dir := filepath.Join(b.work, "pg_dump")
	_ = os.RemoveAll(dir)
	defer os.RemoveAll(dir)
	cfg := admin.Config()
	conn := func(name string) string {
		return fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable", cfg.Host, cfg.Port, cfg.User, name)
	}
	t0 := time.Now()
	for _, args := range [][]string{
		{dump, "-Fd", "-j", "4", "-f", dir, "-d", conn(src)},
		{restore, "-j", "4", "-d", conn(target), dir},
	} {
		cmd := exec.CommandContext(ctx, args[0], args[1:]...)
		if out, err := cmd.CombinedOutput(); err != nil {
			return 0, fmt.Errorf("%s: %v: %s", filepath.Base(args[0]), err, out)
		}
	}
	return time.Since(t0).Seconds(), nil
}
