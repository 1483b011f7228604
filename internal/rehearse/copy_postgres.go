package rehearse

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"

	"hsops/internal/config"
	"hsops/internal/db"
	"hsops/internal/parallel"
	"hsops/internal/rowsum"
)

// pgCopyOptions tune a PostgreSQL copy.
type pgCopyOptions struct {
	// Jobs is the number of tables copied (and indexes built) at once.
	Jobs int
	// ForceSnapshot makes the snapshot copy even when no session is
	// connected (tests, benchmarks).
	ForceSnapshot bool
	// Verify compares every table of the copy with the source's at the
	// snapshot (row count and checksum).
	Verify bool
	// OnSnapshot is called with the exported snapshot while it is held
	// (tests read the source at the snapshot with it).
	OnSnapshot func(id string)
	// Progress receives bytes copied and the estimated total.
	Progress func(done, total int64)
	// Note receives what the operator should know.
	Note func(string)
}

// Postgres error codes the copy tells apart.
const (
	pgObjectInUse      = "55006"
	pgInsufficientPriv = "42501"
)

func pgCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// copyPostgres makes scratch, a copy of the database dbc names, on the same
// server: with CREATE DATABASE ... TEMPLATE when no other session is
// connected to it (the fastest, exact copy; new connections to the source
// wait while it runs), else from one exported snapshot, table by table,
// while the homeserver keeps working.
func copyPostgres(ctx context.Context, maint *pgx.Conn, dbc config.Database, scratch string, o pgCopyOptions) (Copy, error) {
	t0 := time.Now()
	src := dbc.DBName()
	c := Copy{Scratch: scratch}
	if !o.ForceSnapshot {
		var others int
		// Our own inspection's session may still be closing: it is not
		// another session.
		if err := maint.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid() AND application_name <> $2", src, inspectApp).Scan(&others); err != nil {
			return c, fmt.Errorf("count the sessions on %s: %w", src, err)
		}
		if others == 0 {
			_, err := maint.Exec(ctx, fmt.Sprintf("CREATE DATABASE %s TEMPLATE %s", qi(scratch), qi(src)))
			switch code := pgCode(err); {
			case err == nil:
				c.Method = "template"
				c.Millis = time.Since(t0).Milliseconds()
				_ = maint.QueryRow(ctx, "SELECT pg_database_size($1)", scratch).Scan(&c.Bytes)
				return c, nil
			case code == pgObjectInUse:
				o.note("a session connected to " + src + " while the template copy started: copied from a snapshot instead")
			case code == pgInsufficientPriv && !strings.Contains(err.Error(), "to create database"):
				o.note("this role may not use " + src + " as a template (only its owner or a superuser may): copied from a snapshot instead")
			default:
				return c, createErr(err, scratch)
			}
		}
	}
	c.Method = "snapshot"
	err := snapshotCopy(ctx, maint, dbc, scratch, o, &c)
	c.Millis = time.Since(t0).Milliseconds()
	if err == nil {
		_ = maint.QueryRow(ctx, "SELECT pg_database_size($1)", scratch).Scan(&c.Bytes)
	}
	return c, err
}

func createErr(err error, scratch string) error {
	if errors.Is(err, context.Canceled) {
		return err
	}
	return fmt.Errorf("%w: create the scratch database %s: %v", ErrScratch, scratch, err)
}

func (o pgCopyOptions) note(s string) {
	if o.Note != nil {
		o.Note(s)
	}
}

// snapshotCopy copies from one exported snapshot: the schema is read and
// rebuilt, every table is copied with COPY (several at once, each reader
// in the same snapshot), then keys, indexes, foreign keys, triggers and
// sequence values are restored, as pg_dump | pg_restore would do.
func snapshotCopy(ctx context.Context, maint *pgx.Conn, dbc config.Database, scratch string, o pgCopyOptions, c *Copy) error {
	if err := createEmptyLike(ctx, maint, dbc.DBName(), scratch); err != nil {
		return err
	}
	sc, err := newSnapshotCopier(dbc, scratch, o)
	if err != nil {
		return err
	}
	exp, release, err := sc.exportSnapshot(ctx, dbc)
	if err != nil {
		return err
	}
	defer release()
	s, err := readPGSchema(ctx, exp)
	if err != nil {
		return err
	}
	for _, name := range s.Skipped {
		o.note(fmt.Sprintf("index %s is invalid in the source (a failed CREATE INDEX CONCURRENTLY): not copied", name))
	}
	dst, err := connectTarget(ctx, sc.dstCC, s.Schema)
	if err != nil {
		return err
	}
	defer dst.Close(context.WithoutCancel(ctx))
	if err := execAll(ctx, dst, createStatements(s), "rebuild the schema in "+scratch); err != nil {
		return err
	}

	tData := time.Now()
	rows, err := sc.copyData(ctx, s)
	if err != nil {
		return err
	}
	c.Tables, c.Rows = len(s.Tables), rows
	c.DataMillis = time.Since(tData).Milliseconds()

	tRebuild := time.Now()
	if err := sc.rebuildConstraints(ctx, s); err != nil {
		return err
	}
	if err := execAll(ctx, dst, finishStatements(s), "finish the copy "+scratch); err != nil {
		return err
	}
	c.RebuildMillis = time.Since(tRebuild).Milliseconds()
	if o.Verify {
		if err := verifyCopy(ctx, exp, sc.dstCC, s); err != nil {
			return err
		}
		c.Verified = true
	}
	return nil
}

// createEmptyLike creates scratch, empty, with the encoding and locale of
// the database src.
func createEmptyLike(ctx context.Context, maint *pgx.Conn, src, scratch string) error {
	var enc, collate, ctype string
	err := maint.QueryRow(ctx, "SELECT pg_encoding_to_char(encoding), datcollate, datctype FROM pg_database WHERE datname = $1", src).Scan(&enc, &collate, &ctype)
	if err != nil {
		return fmt.Errorf("read the encoding of %s: %w", src, err)
	}
	_, err = maint.Exec(ctx, fmt.Sprintf("CREATE DATABASE %s TEMPLATE template0 ENCODING %s LC_COLLATE %s LC_CTYPE %s",
		qi(scratch), quoteLiteral(enc), quoteLiteral(collate), quoteLiteral(ctype)))
	if err != nil {
		return createErr(err, scratch)
	}
	return nil
}

// snapshotCopier holds what the sessions of a snapshot copy connect with,
// and the snapshot once exported.
type snapshotCopier struct {
	o            pgCopyOptions
	scratch      string
	srcCC, dstCC *pgx.ConnConfig
	snap         string
}

// newSnapshotCopier prepares the sessions' configurations: on the source
// and on the scratch database, each named for the scratch database (a
// session of the rehearsal is told apart by it).
func newSnapshotCopier(dbc config.Database, scratch string, o pgCopyOptions) (*snapshotCopier, error) {
	app := appName(scratch)
	srcCC, err := db.PostgresConnConfig(dbc, app)
	if err != nil {
		return nil, err
	}
	srcCC.RuntimeParams["application_name"] = app
	dstCC, err := db.PostgresConnConfig(db.WithDBName(dbc, scratch), app)
	if err != nil {
		return nil, err
	}
	dstCC.RuntimeParams["application_name"] = app
	return &snapshotCopier{o: o, scratch: scratch, srcCC: srcCC, dstCC: dstCC}, nil
}

// exportSnapshot opens the session that exports the snapshot, in its
// transaction; the snapshot lasts until release is called (after
// everything is read).
func (sc *snapshotCopier) exportSnapshot(ctx context.Context, dbc config.Database) (exp *sql.Conn, release func(), err error) {
	sdb := stdlib.OpenDB(*sc.srcCC)
	exp, err = sdb.Conn(ctx)
	if err != nil {
		sdb.Close()
		return nil, nil, fmt.Errorf("%w: %s: %v", db.ErrUnreachable, dbc, err)
	}
	release = func() {
		_, _ = exp.ExecContext(context.WithoutCancel(ctx), "ROLLBACK")
		exp.Close()
		sdb.Close()
	}
	// A server's own limits must not end the snapshot half-way.
	for _, s := range []string{"SET statement_timeout = 0", "SET idle_in_transaction_session_timeout = 0"} {
		_, _ = exp.ExecContext(ctx, s)
	}
	if _, err := exp.ExecContext(ctx, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"); err != nil {
		release()
		return nil, nil, fmt.Errorf("start the snapshot: %w", err)
	}
	if err := exp.QueryRowContext(ctx, "SELECT pg_export_snapshot()").Scan(&sc.snap); err != nil {
		release()
		return nil, nil, fmt.Errorf("export the snapshot: %w", err)
	}
	if sc.o.OnSnapshot != nil {
		sc.o.OnSnapshot(sc.snap)
	}
	return exp, release, nil
}

// createStatements create the schema's sequences, functions, tables and
// views, in that order.
func createStatements(s *pgSchema) []string {
	var stmts []string
	for _, sq := range s.Sequences {
		stmts = append(stmts, sq.Create)
	}
	stmts = append(stmts, s.Functions...)
	for _, t := range s.Tables {
		stmts = append(stmts, t.Create)
	}
	return append(stmts, s.Views...)
}

// copyData copies every table's rows, biggest tables first, each reader in
// the snapshot, and returns the number of rows copied.
func (sc *snapshotCopier) copyData(ctx context.Context, s *pgSchema) (int64, error) {
	var total int64
	for _, t := range s.Tables {
		total += t.Bytes
	}
	var done, rows atomic.Int64
	report := func() {
		if sc.o.Progress != nil {
			sc.o.Progress(done.Load(), max(total, done.Load()))
		}
	}
	tables := append([]pgTable(nil), s.Tables...)
	sortBySize(tables)
	err := parallel.For(ctx, sc.o.jobs(), len(tables), func(ctx context.Context, i int) error {
		n, err := copyTable(ctx, sc.srcCC, sc.dstCC, s.Schema, sc.snap, tables[i], func(b int64) { done.Add(b); report() })
		rows.Add(n)
		return err
	})
	if err != nil {
		return 0, err
	}
	report()
	return rows.Load(), nil
}

// rebuildConstraints builds the keys, then the indexes, then the checks,
// then the foreign keys, several at once (see rebuildJobs).
func (sc *snapshotCopier) rebuildConstraints(ctx context.Context, s *pgSchema) error {
	for _, jobs := range rebuildJobs(s) {
		err := parallel.For(ctx, sc.o.jobs(), len(jobs), func(ctx context.Context, i int) error {
			conn, err := connectTarget(ctx, sc.dstCC, s.Schema)
			if err != nil {
				return err
			}
			defer conn.Close(context.WithoutCancel(ctx))
			for _, stmt := range jobs[i] {
				// Two foreign keys added side by side lock both of their
				// tables, so tables that reference each other can
				// deadlock: PostgreSQL aborts one of them, which is run
				// again (nothing of it was kept).
				err := db.RetryDeadlocks(ctx, func() error {
					_, err := conn.Exec(ctx, stmt)
					return err
				})
				if err != nil {
					return fmt.Errorf("rebuild %s in %s: %w", firstLine(stmt), sc.scratch, err)
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// rebuildJobs are the rebuild's steps (keys, indexes, checks, foreign
// keys), each a list of jobs run side by side, each job statements run one
// after the other on one session, the biggest tables' first. ALTER TABLE
// locks its table whole, so a table's ALTERs are one job while other
// tables' run beside them; CREATE INDEX statements run side by side, on
// one table too: each is a job.
func rebuildJobs(s *pgSchema) [][][]string {
	size := map[string]int64{}
	for _, t := range s.Tables {
		size[t.Name] = t.Bytes
	}
	byTable := func(stmts []pgStmt) [][]string {
		groups := map[string][]string{}
		var order []string
		for _, st := range stmts {
			if _, ok := groups[st.Table]; !ok {
				order = append(order, st.Table)
			}
			groups[st.Table] = append(groups[st.Table], st.SQL)
		}
		sort.SliceStable(order, func(i, j int) bool { return size[order[i]] > size[order[j]] })
		out := make([][]string, 0, len(order))
		for _, t := range order {
			out = append(out, groups[t])
		}
		return out
	}
	each := func(stmts []pgStmt) [][]string {
		sorted := append([]pgStmt(nil), stmts...)
		sort.SliceStable(sorted, func(i, j int) bool { return size[sorted[i].Table] > size[sorted[j].Table] })
		out := make([][]string, len(sorted))
		for i, st := range sorted {
			out[i] = []string{st.SQL}
		}
		return out
	}
	return [][][]string{byTable(s.Keys), each(s.Indexes), byTable(s.Checks), byTable(s.Foreign)}
}

// finishStatements restore what comes after the data and the constraints:
// triggers, column options, sequences' owners and values, and the
// planner's statistics (ANALYZE), as the source has them, so that the
// upgrade's queries run the same plans.
func finishStatements(s *pgSchema) []string {
	stmts := append(append([]string{}, s.Triggers...), s.ColumnOptions...)
	for _, sq := range s.Sequences {
		if sq.OwnedBy != "" {
			stmts = append(stmts, fmt.Sprintf("ALTER SEQUENCE %s OWNED BY %s", qi(sq.Name), sq.OwnedBy))
		}
		stmts = append(stmts, fmt.Sprintf("SELECT setval(%s, %d, %t)", quoteLiteral(qi(sq.Name)), sq.LastValue, sq.IsCalled))
	}
	return append(stmts, "ANALYZE")
}

// execAll runs statements one after the other; a failure names what was
// being done and the statement.
func execAll(ctx context.Context, conn *pgx.Conn, stmts []string, what string) error {
	for _, stmt := range stmts {
		if _, err := conn.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("%s: %s: %w", what, firstLine(stmt), err)
		}
	}
	return nil
}

func (o pgCopyOptions) jobs() int {
	if o.Jobs > 0 {
		return o.Jobs
	}
	return 4
}

// connectTarget opens a session on the scratch database with the source's
// schema first on its path.
func connectTarget(ctx context.Context, cc *pgx.ConnConfig, schemaName string) (*pgx.Conn, error) {
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return nil, fmt.Errorf("%w: connect to the scratch database: %v", ErrScratch, err)
	}
	stmts := []string{"SET check_function_bodies = off", "SET statement_timeout = 0", "SET maintenance_work_mem = '256MB'"}
	if schemaName != "public" {
		stmts = append([]string{"CREATE SCHEMA IF NOT EXISTS " + qi(schemaName)}, stmts...)
	}
	stmts = append(stmts, "SET search_path = "+qi(schemaName))
	for _, s := range stmts {
		if _, err := conn.Exec(ctx, s); err != nil && !strings.HasPrefix(s, "SET maintenance") {
			conn.Close(ctx)
			return nil, fmt.Errorf("prepare the scratch session (%s): %w", s, err)
		}
	}
	return conn, nil
}

// copyTable streams one table from the snapshot into the scratch database
// in COPY's binary format.
func copyTable(ctx context.Context, srcCC, dstCC *pgx.ConnConfig, schemaName, snap string, t pgTable, progress func(int64)) (int64, error) {
	src, err := pgx.ConnectConfig(ctx, srcCC)
	if err != nil {
		return 0, fmt.Errorf("%w: %v", db.ErrUnreachable, err)
	}
	defer src.Close(context.WithoutCancel(ctx))
	_, _ = src.Exec(ctx, "SET statement_timeout = 0")
	for _, s := range []string{"BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", "SET TRANSACTION SNAPSHOT " + quoteLiteral(snap)} {
		if _, err := src.Exec(ctx, s); err != nil {
			return 0, fmt.Errorf("join the snapshot: %w", err)
		}
	}
	dst, err := connectTarget(ctx, dstCC, schemaName)
	if err != nil {
		return 0, err
	}
	defer dst.Close(context.WithoutCancel(ctx))
	cols := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		cols[i] = qi(c)
	}
	list := strings.Join(cols, ", ")
	name := qi(schemaName) + "." + qi(t.Name)
	pr, pw := io.Pipe()
	var wg sync.WaitGroup
	var readErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, readErr = src.PgConn().CopyTo(ctx, &countingWriter{w: pw, add: progress}, fmt.Sprintf("COPY %s (%s) TO STDOUT (FORMAT binary)", name, list))
		pw.CloseWithError(readErr)
	}()
	tag, err := dst.PgConn().CopyFrom(ctx, pr, fmt.Sprintf("COPY %s (%s) FROM STDIN (FORMAT binary)", name, list))
	pr.CloseWithError(err)
	wg.Wait()
	if readErr != nil {
		return 0, fmt.Errorf("copy %s out of the snapshot: %w", t.Name, readErr)
	}
	if err != nil {
		return 0, fmt.Errorf("%w: copy %s into the scratch database: %v", ErrScratch, t.Name, err)
	}
	_, _ = src.Exec(ctx, "COMMIT")
	return tag.RowsAffected(), nil
}

type countingWriter struct {
	w   io.Writer
	add func(int64)
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.add(int64(n))
	return n, err
}

// verifyCopy compares every table of the copy with the source at the
// snapshot (exp is the exporting session, still in its transaction).
func verifyCopy(ctx context.Context, exp *sql.Conn, dstCC *pgx.ConnConfig, s *pgSchema) error {
	tdb := stdlib.OpenDB(*dstCC)
	defer tdb.Close()
	shim := &db.DB{Engine: db.Postgres}
	for _, t := range s.Tables {
		cols, err := rowsum.Columns(ctx, shim, exp, t.Name)
		if err != nil {
			return err
		}
		from := qi(s.Schema) + "." + qi(t.Name)
		want, err := rowsum.Table(ctx, exp, from, cols)
		if err != nil {
			return err
		}
		got, err := rowsum.Table(ctx, tdb, from, cols)
		if err != nil {
			return err
		}
		if got != want {
			return fmt.Errorf("%w: table %s differs from the source at the snapshot: %s in the copy, %s in the source", ErrScratch, t.Name, got, want)
		}
	}
	return nil
}

func sortBySize(ts []pgTable) {
	sort.SliceStable(ts, func(i, j int) bool { return ts[i].Bytes > ts[j].Bytes })
}

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 80 {
		s = s[:80] + "..."
	}
	return s
}

// dropPostgres drops a scratch database.
func dropPostgres(ctx context.Context, maint *pgx.Conn, name string) error {
	_, err := maint.Exec(ctx, "DROP DATABASE IF EXISTS "+qi(name))
	return err
}
