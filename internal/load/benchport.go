package load

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"hsops/internal/config"
	"hsops/internal/db"
	"hsops/internal/porter"
	"hsops/schema"
	"hsops/schema/engine"
)

// BenchPortOptions configure BenchPort.
type BenchPortOptions struct {
	// Events is the number of messages of the generated source.
	Events int
	// Jobs and BatchSize are port_db's --jobs and --batch-size; the floor
	// runs with the same Jobs.
	Jobs, BatchSize int
	// Rounds is how many times the three loads are measured (at least 1).
	// The order alternates from one round to the next (port_db first,
	// then last), so that a machine whose load drifts during a run favours
	// neither side; the result is the round of median ratio.
	Rounds int
	// Work is the directory of the generated source (reused across runs:
	// generating 1,000,000 messages takes minutes).
	Work string
	// AdminURL is a PostgreSQL role that may create databases.
	AdminURL string
	// PortDB is the port_db binary to measure.
	PortDB string
	// Stderr receives port_db's stderr.
	Stderr io.Writer
	// Progress receives a line as each step begins.
	Progress func(string)
}

// BenchPortResult is what BenchPort measured.
type BenchPortResult struct {
	Events int   `json:"events"`
	Rows   int64 `json:"rows"`
	// BookkeepingRows are the rows of Rows in tables that a new schema
	// fills by itself (schema_compat_version ...): the raw COPY skips them.
	BookkeepingRows int64   `json:"bookkeeping_rows"`
	Bytes           int64   `json:"bytes"`
	SQLiteMB        float64 `json:"sqlite_file_mb"`
	GenerateSecs    float64 `json:"generate_seconds,omitempty"`
	Jobs            int     `json:"jobs"`
	BatchSize       int     `json:"batch_size"`

	// Port is port_db from start to exit: its time, throughput, peak
	// memory (maximum resident set) and where its time went.
	PortSeconds   float64        `json:"port_seconds"`
	PortRowsPerS  float64        `json:"port_rows_per_s"`
	PortMBPerS    float64        `json:"port_mb_per_s"`
	PeakRSSMB     float64        `json:"port_peak_rss_mb"`
	PortPhases    []porter.Phase `json:"port_phases"`
	Rebuilt       int            `json:"rebuilt"`
	RebuildMillis int64          `json:"rebuild_ms"`

	// RawCopy is the reference: the same rows loaded with COPY FROM STDIN
	// into a new database with the same, fully indexed schema, one table
	// after another on one connection.
	RawCopySeconds float64 `json:"raw_copy_seconds"`
	RawCopyRows    int64   `json:"raw_copy_rows"`
	// Ratio is port_db's time over the raw COPY's.
	Ratio float64 `json:"ratio"`

	// Floor is the port's method without the port: the same rows by raw
	// COPY into bare tables of the same schema, then the same index and
	// constraint rebuilds, in the same order with the same Jobs.
	FloorSeconds        float64 `json:"floor_seconds"`
	FloorCopySeconds    float64 `json:"floor_copy_seconds"`
	FloorRebuildSeconds float64 `json:"floor_rebuild_seconds"`
	// FloorRatio is port_db's time over the floor's.
	FloorRatio float64 `json:"floor_ratio"`

	// AllRounds are every round's times, in the order they ran; the fields
	// above are those of the round of median ratio.
	AllRounds []BenchPortRound `json:"rounds"`
}

// BenchPortRound is one round of the three loads.
type BenchPortRound struct {
	PortFirst      bool    `json:"port_first"`
	PortSeconds    float64 `json:"port_seconds"`
	RawCopySeconds float64 `json:"raw_copy_seconds"`
	FloorSeconds   float64 `json:"floor_seconds"`
	Ratio          float64 `json:"ratio"`
	FloorRatio     float64 `json:"floor_ratio"`
	// LoadAvg is the machine's load average (1, 5, 15 minutes) at the
	// round's start and end.
	LoadAvgStart string `json:"loadavg_start"`
	LoadAvgEnd   string `json:"loadavg_end"`
}

// BenchPort measures port_db on a generated engine database against a raw
// COPY of the very same rows into the same schema, and against the floor of
// the port's method, all in one run so that they share the machine's
// conditions:
//
//  1. generate (or reuse, in Work) a SQLite database of Events messages
//     with everything that goes with them;
//  2. port it with the port_db binary into a new database, timing the
//     process and reading its peak memory;
//  3. dump every table of the result with COPY TO (not timed);
//  4. load the dumps into a new database holding the engine's schema, with
//     every index and constraint in place, table after table in foreign-key
//     order on one connection: the raw COPY;
//  5. load them into another such database with porter.RawLoad: the floor.
//
// With Rounds above 1, steps 2, 4 and 5 are repeated, port_db last in
// every other round, and the round of median ratio is reported.
func BenchPort(ctx context.Context, o BenchPortOptions) (*BenchPortResult, error) {
	say := o.Progress
	if say == nil {
		say = func(string) {}
	}
	if o.Stderr == nil {
		o.Stderr = io.Discard
	}
	if err := os.MkdirAll(o.Work, 0o755); err != nil {
		return nil, err
	}
	res := &BenchPortResult{Events: o.Events, Jobs: o.Jobs, BatchSize: o.BatchSize}
	src, err := benchSourceFile(ctx, o, res, say)
	if err != nil {
		return nil, err
	}
	admin, err := pgx.Connect(ctx, o.AdminURL)
	if err != nil {
		return nil, fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	defer admin.Close(context.Background())
	run := &benchPortRun{o: o, src: src, admin: admin, say: say, rounds: max(o.Rounds, 1)}
	var measured []BenchPortResult
	for r := 0; r < run.rounds; r++ {
		round, err := run.round(ctx, r, *res)
		if err != nil {
			return nil, err
		}
		res.AllRounds = append(res.AllRounds, round.AllRounds[len(round.AllRounds)-1])
		measured = append(measured, round)
	}
	// The round of median ratio (the lower of the two middle ones).
	sort.SliceStable(measured, func(i, j int) bool { return measured[i].Ratio < measured[j].Ratio })
	all := res.AllRounds
	*res = measured[(len(measured)-1)/2]
	res.AllRounds = all
	for _, name := range []string{"hsops_bench_rawcopy", "hsops_bench_floor"} {
		dropBenchDatabase(ctx, admin, name)
	}
	return res, nil
}

// benchPortRun is one BenchPort: its source, its server, and the dumps of
// the first port, which the references load.
type benchPortRun struct {
	o      BenchPortOptions
	src    string
	admin  *pgx.Conn
	say    func(string)
	rounds int
	dumps  map[string][]byte
}

// round measures the three loads once, port_db first in even rounds and
// last in odd ones, and returns res with this round's figures, the round
// itself appended to AllRounds.
func (b *benchPortRun) round(ctx context.Context, r int, res BenchPortResult) (BenchPortResult, error) {
	rr := BenchPortRound{PortFirst: r%2 == 0, LoadAvgStart: loadAvg()}
	steps := []func(context.Context, int, *BenchPortResult) error{b.port, b.references}
	if !rr.PortFirst {
		steps[0], steps[1] = steps[1], steps[0]
	}
	for _, step := range steps {
		if err := step(ctx, r, &res); err != nil {
			return res, err
		}
	}
	res.Ratio = res.PortSeconds / res.RawCopySeconds
	res.FloorRatio = res.PortSeconds / res.FloorSeconds
	rr.PortSeconds, rr.RawCopySeconds, rr.FloorSeconds = res.PortSeconds, res.RawCopySeconds, res.FloorSeconds
	rr.Ratio, rr.FloorRatio, rr.LoadAvgEnd = res.Ratio, res.FloorRatio, loadAvg()
	res.AllRounds = append(res.AllRounds, rr)
	return res, nil
}

// newDB (re)creates an empty database and returns its section.
func (b *benchPortRun) newDB(ctx context.Context, name string) (config.Database, error) {
	if err := createBenchDatabase(ctx, b.admin, name); err != nil {
		return config.Database{}, err
	}
	return databaseConfig(b.o.AdminURL, name)
}

// port runs port_db into a new database; the first port's tables are
// dumped for the references.
func (b *benchPortRun) port(ctx context.Context, r int, res *BenchPortResult) error {
	ported, err := b.newDB(ctx, "hsops_bench_ported")
	if err != nil {
		return err
	}
	b.say(fmt.Sprintf("round %d of %d: porting with %s --jobs %d --batch-size %d...", r+1, b.rounds, b.o.PortDB, b.o.Jobs, b.o.BatchSize))
	if err := runPortDB(ctx, b.o, b.src, ported, res); err != nil {
		return err
	}
	if b.dumps == nil {
		b.dumps, err = dumpTables(ctx, ported)
	}
	return err
}

// references loads the dumps by raw COPY into the fully indexed schema,
// then measures the floor.
func (b *benchPortRun) references(ctx context.Context, r int, res *BenchPortResult) error {
	b.say(fmt.Sprintf("round %d of %d: raw COPY of the same rows into the same, fully indexed schema...", r+1, b.rounds))
	refCfg, err := b.newDB(ctx, "hsops_bench_rawcopy")
	if err != nil {
		return err
	}
	if res.RawCopySeconds, res.RawCopyRows, err = rawCopyIndexed(ctx, refCfg, b.dumps); err != nil {
		return err
	}
	b.say(fmt.Sprintf("round %d of %d: the floor: raw COPY into bare tables, then the index builds, %d at once...", r+1, b.rounds, b.o.Jobs))
	floorCfg, err := b.newDB(ctx, "hsops_bench_floor")
	if err != nil {
		return err
	}
	floor, err := measureFloor(ctx, floorCfg, b.dumps, b.o.Jobs)
	if err != nil {
		return err
	}
	res.FloorSeconds = floor.Total.Seconds()
	res.FloorCopySeconds = floor.Copy.Seconds()
	res.FloorRebuildSeconds = floor.Rebuild.Seconds()
	return nil
}

// benchSourceFile is the generated source of o.Events messages in o.Work,
// generated unless it is there from an earlier run.
func benchSourceFile(ctx context.Context, o BenchPortOptions, res *BenchPortResult, say func(string)) (string, error) {
	src := filepath.Join(o.Work, fmt.Sprintf("source-%d.db", o.Events))
	took, err := generateSQLite(ctx, src, 0, o.Events, say)
	if err != nil {
		return "", err
	}
	res.GenerateSecs = took.Seconds()
	st, err := os.Stat(src)
	if err != nil {
		return "", err
	}
	res.SQLiteMB = float64(st.Size()) / 1e6
	return src, nil
}

// measureFloor loads the dumps into the engine's schema with
// porter.RawLoad: bare tables, then the index builds.
func measureFloor(ctx context.Context, cfg config.Database, dumps map[string][]byte, jobs int) (*porter.RawLoadResult, error) {
	if err := createSchema(ctx, cfg); err != nil {
		return nil, err
	}
	floor, err := porter.RawLoad(ctx, cfg, dumps, jobs)
	if err != nil {
		return nil, fmt.Errorf("the floor: %w", err)
	}
	return floor, nil
}

// runPortDB runs port_db into the ported database and records its time,
// peak memory and summary.
func runPortDB(ctx context.Context, o BenchPortOptions, src string, ported config.Database, res *BenchPortResult) error {
	cfgPath := filepath.Join(o.Work, "pg.yaml")
	if err := writePostgresConfig(cfgPath, ported); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, o.PortDB, "--sqlite-database", src, "--postgres-config", cfgPath,
		"--jobs", fmt.Sprint(o.Jobs), "--batch-size", fmt.Sprint(o.BatchSize), "--json")
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = o.Stderr
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return err
	}
	peak := watchPeakMemory(cmd.Process.Pid)
	var summary struct {
		Result porter.Result `json:"result"`
	}
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	found := false
	for sc.Scan() {
		if bytes.Contains(sc.Bytes(), []byte(`"event":"summary"`)) {
			if err := json.Unmarshal(sc.Bytes(), &summary); err != nil {
				return fmt.Errorf("port_db's summary: %w", err)
			}
			found = true
		}
	}
	// port_db closed its output: it is exiting, and until Wait its pid is
	// not anyone else's.
	peakKB := peak()
	err = cmd.Wait()
	wall := time.Since(t0)
	if err != nil {
		return fmt.Errorf("port_db: %w", err)
	}
	if !found || summary.Result.Rows == 0 {
		return fmt.Errorf("port_db printed no summary with rows: nothing to measure")
	}
	if peakKB == 0 {
		// No /proc: the resource usage's maximum, which on Linux would also
		// count this process's own memory from before port_db's exec.
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			peakKB = ru.Maxrss
		}
	}
	res.PeakRSSMB = float64(peakKB) / 1024
	r := summary.Result
	res.Rows, res.Bytes = r.Rows, r.Bytes
	res.PortSeconds = wall.Seconds()
	res.PortRowsPerS = float64(res.Rows) / res.PortSeconds
	res.PortMBPerS = float64(res.Bytes) / 1e6 / res.PortSeconds
	res.PortPhases, res.Rebuilt, res.RebuildMillis = r.Phases, r.Rebuilt, r.RebuildMillis
	for _, t := range r.Tables {
		if benchSkip[t.Name] {
			res.BookkeepingRows += t.Copied
		}
	}
	return nil
}

// watchPeakMemory follows a process's peak resident memory (VmHWM, in kB)
// until the returned function is called, which stops the watch and returns
// the peak seen (0 without /proc). The resource usage Wait reports will not
// do on Linux: a child started with vfork inherits its parent's peak, here
// hsload's, swollen by the generator.
func watchPeakMemory(pid int) func() int64 {
	var (
		mu   sync.Mutex
		peak int64
		stop = make(chan struct{})
		done = make(chan struct{})
	)
	read := func() {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			return
		}
		for _, line := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
				kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
				mu.Lock()
				if err == nil && kb > peak {
					peak = kb
				}
				mu.Unlock()
			}
		}
	}
	go func() {
		defer close(done)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			read()
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	return func() int64 {
		close(stop)
		<-done
		mu.Lock()
		defer mu.Unlock()
		return peak
	}
}

// benchSkip are bookkeeping tables, which a new schema fills by itself or
// a port keeps for itself.
var benchSkip = map[string]bool{"schema_version": true, "schema_compat_version": true, "applied_schema_deltas": true,
	"applied_module_schemas": true, "background_updates": true, "hsops_engine": true, "port_from_sqlite3": true,
	"hsops_port": true, "hsops_port_tables": true, "hsops_port_deferred": true}

// dumpTables reads every non-empty table of a database with COPY TO, in
// COPY's text format.
func dumpTables(ctx context.Context, cfg config.Database) (map[string][]byte, error) {
	d, err := db.Open(ctx, cfg, db.Options{})
	if err != nil {
		return nil, err
	}
	defer d.Close()
	tables, err := d.Tables(ctx, d)
	if err != nil {
		return nil, err
	}
	dumps := map[string][]byte{}
	conn, err := d.Conn(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	err = conn.Raw(func(dc any) error {
		pc := dc.(interface{ Conn() *pgx.Conn }).Conn()
		for _, t := range tables {
			if benchSkip[t] {
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
	return dumps, err
}

func createSchema(ctx context.Context, cfg config.Database) error {
	d, err := db.Open(ctx, cfg, db.Options{})
	if err != nil {
		return err
	}
	defer d.Close()
	_, err = engine.Schema().Apply(ctx, d, schema.Options{ServerName: "example.org", Holder: "hsload bench-port"})
	return err
}

// rawCopyIndexed creates the engine's schema in a new database and times
// loading the dumps into it with COPY FROM STDIN, one table after another
// on one connection, each after the tables it references by foreign key.
func rawCopyIndexed(ctx context.Context, cfg config.Database, dumps map[string][]byte) (float64, int64, error) {
	if err := createSchema(ctx, cfg); err != nil {
		return 0, 0, err
	}
	d, err := db.Open(ctx, cfg, db.Options{})
	if err != nil {
		return 0, 0, err
	}
	defer d.Close()
	order, err := referencedFirst(ctx, d, dumps)
	if err != nil {
		return 0, 0, err
	}
	conn, err := d.Conn(ctx)
	if err != nil {
		return 0, 0, err
	}
	defer conn.Close()
	var rows int64
	t0 := time.Now()
	err = conn.Raw(func(dc any) error {
		pc := dc.(interface{ Conn() *pgx.Conn }).Conn()
		for _, t := range order {
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

// referencedFirst orders the dumped tables so that each comes after the
// tables it references by foreign key (read from the catalog).
func referencedFirst(ctx context.Context, d *db.DB, dumps map[string][]byte) ([]string, error) {
	refs := map[string][]string{}
	rows, err := d.QueryContext(ctx, `SELECT DISTINCT c.relname, r.relname FROM pg_constraint con
		JOIN pg_class c ON c.oid = con.conrelid JOIN pg_class r ON r.oid = con.confrelid
		WHERE con.contype = 'f' AND c.relnamespace = current_schema()::regnamespace AND c.oid <> r.oid`)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var t, r string
		if err := rows.Scan(&t, &r); err != nil {
			rows.Close()
			return nil, err
		}
		refs[t] = append(refs[t], r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	names := make([]string, 0, len(dumps))
	for t := range dumps {
		names = append(names, t)
	}
	sort.Strings(names)
	var order []string
	placed := map[string]bool{}
	var place func(t string, depth int)
	place = func(t string, depth int) {
		if placed[t] || depth > len(names) {
			return
		}
		for _, r := range refs[t] {
			if _, ok := dumps[r]; ok {
				place(r, depth+1)
			}
		}
		if !placed[t] {
			placed[t] = true
			order = append(order, t)
		}
	}
	for _, t := range names {
		place(t, 0)
	}
	return order, nil
}
