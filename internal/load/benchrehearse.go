package load

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

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

func (b *rehearseBench) say(s string) { fmt.Fprintln(b.out, s) }

func (b *rehearseBench) sqlite() error {
	src := filepath.Join(b.work, fmt.Sprintf("source-%d-v%d.db", b.events, b.version))
	if _, err := generateSQLite(b.ctx, src, b.version, b.events, b.say); err != nil {
		return err
	}
	engine := "SQLite"
	if b.wal {
		engine = "SQLite in WAL mode"
		var err error
		if src, err = b.walSource(src); err != nil {
			return err
		}
	}
	plain := filepath.Join(b.work, "plain-copy.db")
	defer os.Remove(plain)
	cfg := filepath.Join(b.work, "source.yaml")
	if err := writeSQLiteConfig(cfg, src); err != nil {
		return err
	}
	realCfg := filepath.Join(b.work, "real.yaml")
	if err := writeSQLiteConfig(realCfg, plain); err != nil {
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

// walSource is a copy of the source in WAL mode, made once.
func (b *rehearseBench) walSource(src string) (string, error) {
	walSrc := strings.TrimSuffix(src, ".db") + "-wal.db"
	if _, err := os.Stat(walSrc); err == nil {
		return walSrc, nil
	}
	tmp := walSrc + ".tmp"
	if err := copyFile(src, tmp); err != nil {
		return "", err
	}
	d, err := db.OpenSQLite(b.ctx, tmp, db.Options{})
	if err != nil {
		return "", err
	}
	_, err = d.ExecContext(b.ctx, "PRAGMA journal_mode = WAL")
	d.Close()
	if err != nil {
		return "", err
	}
	return walSrc, os.Rename(tmp, walSrc)
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

// realDB is the database the real upgrade runs on, a copy of the source
// each round.
const realDB = "hsops_bench_rehearse_real"

func (b *rehearseBench) postgres(pgURL string) error {
	ctx := b.ctx
	admin, err := pgx.Connect(ctx, pgURL)
	if err != nil {
		return err
	}
	defer admin.Close(ctx)
	src := fmt.Sprintf("hsops_bench_rehearse_%d_v%d", b.events, b.version)
	if err := b.pgSource(admin, pgURL, src); err != nil {
		return err
	}
	srcCfg, err := b.pgConfig(pgURL, src)
	if err != nil {
		return err
	}
	defer dropBenchDatabase(ctx, admin, realDB)
	realCfg, err := b.pgConfig(pgURL, realDB)
	if err != nil {
		return err
	}
	for round := 1; round <= b.rounds; round++ {
		if err := b.pgRound(admin, round, src, srcCfg, realCfg); err != nil {
			return err
		}
	}
	return nil
}

// pgSource generates the source database src unless the server has it
// from an earlier run (it is kept across runs on a server that outlives
// them). It is generated under another name and renamed, so that an
// interrupted generation is never reused.
func (b *rehearseBench) pgSource(admin *pgx.Conn, pgURL, src string) error {
	ctx := b.ctx
	var exists bool
	if err := admin.QueryRow(ctx, "SELECT count(*) > 0 FROM pg_database WHERE datname = $1", src).Scan(&exists); err != nil {
		return err
	}
	if exists {
		return nil
	}
	fmt.Fprintf(b.out, "generating database %s (%s)...\n", src, messagesAt(b.events, b.version))
	tmp := src + "_tmp"
	if err := createBenchDatabase(ctx, admin, tmp); err != nil {
		return err
	}
	tmpDB, err := databaseConfig(pgURL, tmp)
	if err != nil {
		return err
	}
	if _, err := gen.Fill(ctx, tmpDB, b.version, benchParams(b.events)); err != nil {
		return err
	}
	if _, err := admin.Exec(ctx, "ALTER DATABASE "+tmp+" RENAME TO "+src); err != nil {
		return err
	}
	_, err = admin.Exec(ctx, "VACUUM")
	return err
}

// pgConfig writes the config of the database name of the server pgURL
// names, in the work directory, and returns its path.
func (b *rehearseBench) pgConfig(pgURL, name string) (string, error) {
	dbc, err := databaseConfig(pgURL, name)
	if err != nil {
		return "", err
	}
	path := filepath.Join(b.work, name+".yaml")
	return path, writePostgresConfig(path, dbc)
}

// pgRound measures one round: the reference copy (CREATE DATABASE ...
// TEMPLATE) and the real upgrade of it, the rehearsal as when nothing is
// connected (its template copy) and as when the homeserver is (its
// snapshot copy), and pg_dump | pg_restore as another reference.
func (b *rehearseBench) pgRound(admin *pgx.Conn, round int, src, srcCfg, realCfg string) error {
	ctx := b.ctx
	fmt.Fprintf(b.out, "PostgreSQL, round %d: CREATE DATABASE ... TEMPLATE, then the real upgrade of it...\n", round)
	dropBenchDatabase(ctx, admin, realDB)
	t0 := time.Now()
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+realDB+" TEMPLATE "+src); err != nil {
		return err
	}
	refSecs := time.Since(t0).Seconds()
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
	snap := rSnap.Report.Databases[0].Copy
	if snap.DataMs > 0 {
		fmt.Fprintf(b.out, "  the snapshot copy: data %.2f s, keys and indexes %.2f s\n", float64(snap.DataMs)/1000, float64(snap.RebuildMs)/1000)
	}
	if secs, err := b.dumpRestore(src, admin); err == nil {
		fmt.Fprintf(b.out, "  pg_dump -Fd -j 4 | pg_restore -j 4, the same data (another reference): %.2f s; the snapshot copy's ratio to it %.2f\n",
			secs, float64(snap.Ms)/1000/secs)
	} else {
		fmt.Fprintf(b.out, "  (pg_dump | pg_restore not measured: %v)\n", err)
	}
	return nil
}

// dumpRestore times pg_dump in directory format and pg_restore, both with
// four jobs, into a new database: what a DBA would run to copy a database
// others are connected to.
func (b *rehearseBench) dumpRestore(src string, admin *pgx.Conn) (float64, error) {
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
	if err := createBenchDatabase(ctx, admin, target); err != nil {
		return 0, err
	}
	defer dropBenchDatabase(ctx, admin, target)
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
