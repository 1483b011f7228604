package porter

import (
	"bytes"
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"hsops/internal/config"
	"hsops/internal/db"
)

// RawLoadResult is what RawLoad measured.
type RawLoadResult struct {
	Rows int64
	// Copy is the time until the last table was copied, Rebuild the time
	// from then until the last index or constraint was back, Total both.
	Copy, Rebuild, Total time.Duration
	// Rebuilt counts the indexes and constraints dropped and put back.
	Rebuilt int
}

// RawLoad loads table dumps (COPY's text format, as COPY ... TO STDOUT
// writes them) into a database whose schema is ready and whose tables are
// empty, by the port's own method: the same indexes and foreign keys
// dropped (read from the catalog), the same order, the same parallel
// rebuilds and session settings, with jobs tasks at once. It reads no
// SQLite, converts nothing and keeps no bookkeeping: it is the floor of the
// method, for benchmarks.
func RawLoad(ctx context.Context, target config.Database, dumps map[string][]byte, jobs int) (*RawLoadResult, error) {
	d, err := db.Open(ctx, target, db.Options{AppName: "hsops raw load", MaxConns: jobs + 1})
	if err != nil {
		return nil, err
	}
	defer d.Close()
	fks, err := foreignKeys(ctx, d)
	if err != nil {
		return nil, err
	}
	var tables []*Table
	empty, bulk := map[string]bool{}, map[string]bool{}
	for name, data := range dumps {
		rows := int64(bytes.Count(data, []byte{'\n'}))
		tables = append(tables, &Table{Name: name, Refs: fks[name], remaining: rows})
		empty[name] = true
		bulk[name] = rows >= deferMinRows
	}
	t0 := time.Now()
	tx, err := d.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	cat, err := readCatalogObjects(ctx, tx)
	if err != nil {
		return nil, err
	}
	drop := chooseDeferred(cat, empty, bulk)
	if err := dropDeferred(ctx, tx, drop, false); err != nil {
		return nil, err
	}
	if err := tx.Commit(); err != nil {
		return nil, err
	}
	res := &RawLoadResult{}
	var rows atomic.Int64
	l := &load{jobs: jobs, session: func(ctx context.Context, fn func(*pgx.Conn) error) error { return session(ctx, d, fn) },
		emit: func(Event) {},
		copy: func(ctx context.Context, t *Table) error {
			return session(ctx, d, func(pc *pgx.Conn) error {
				tag, err := pc.PgConn().CopyFrom(ctx, bytes.NewReader(dumps[t.Name]), "COPY "+db.QuoteIdent(t.Name)+" FROM STDIN")
				if err != nil {
					return fmt.Errorf("copy %s: %w", t.Name, err)
				}
				rows.Add(tag.RowsAffected())
				return nil
			})
		}}
	stats, err := l.run(ctx, tables, drop)
	if err != nil {
		return nil, err
	}
	end := time.Now()
	res.Total = end.Sub(t0)
	res.Copy = stats.CopyEnd.Sub(t0)
	res.Rebuild = end.Sub(stats.CopyEnd)
	res.Rebuilt = stats.Rebuilt
	res.Rows = rows.Load()
	return res, nil
}
