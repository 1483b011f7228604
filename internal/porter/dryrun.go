package porter

import (
	"context"
	"fmt"
	"strings"
	"time"

	"hsops/internal/db"
	"hsops/internal/portstate"
	"hsops/schema"
)

func fts5(createSQL string) bool { return strings.Contains(strings.ToLower(createSQL), "fts5") }

// dryRun reports what a port would copy, writing nothing.
func (p *porter) dryRun(ctx context.Context) error {
	if p.tgtSt.Kind == schema.KindEmpty {
		p.note("would create the PostgreSQL schema at version %d with the schema engine", p.srcSt.Version)
	}
	if st, err := portstate.Read(ctx, p.tgt); err != nil {
		return err
	} else if !st.Done() {
		p.res.InProgress = st.String()
		p.note("a port is in progress: %s; this run would finish it", st)
	}
	for _, t := range p.tables {
		p.res.Tables = append(p.res.Tables, TableResult{Name: t.Name, Strategy: t.Strategy, Already: t.already, Copied: t.remaining})
	}
	return nil
}

// measure reads, for every table, the port's recorded progress, the rows
// already in the target and the rows still to copy, and reports the whole
// run's size (a "plan" event, then a "pending" event per table) so that
// progress is measured against all of it from the start.
func (p *porter) measure(ctx context.Context) error {
	progress, err := p.readProgress(ctx)
	if err != nil {
		return err
	}
	compared := map[*Table]int64{}
	if p.opts.KeepUnchanged && p.tgtSt.Kind != schema.KindEmpty {
		t0 := time.Now()
		if compared, err = p.compareRecopied(ctx); err != nil {
			return err
		}
		p.step("compare", time.Since(t0))
	}
	var already, total int64
	for _, t := range p.tables {
		t.fwd, t.bwd, t.already, t.remaining = 1, 0, 0, 0
		if pr, ok := progress[t.Name]; ok {
			t.fwd, t.bwd = pr[0], pr[1]
		}
		q := "SELECT count(*) FROM " + db.QuoteIdent(t.Name)
		switch t.Strategy {
		case AppendOnly, Search:
			if p.tgtSt.Kind != schema.KindEmpty {
				if err := p.countAlready(ctx, t); err != nil {
					return err
				}
			}
			count := "SELECT (SELECT count(*) FROM " + db.QuoteIdent(t.Name) + " WHERE rowid >= ?) + (SELECT count(*) FROM " + db.QuoteIdent(t.Name) + " WHERE rowid <= ?)"
			args := []any{t.fwd, t.bwd}
			if t.Strategy == Search {
				_, count = p.searchQuery()
				args = args[:1]
			}
			if err := p.src.QueryRowContext(ctx, count, args...).Scan(&t.remaining); err != nil {
				return corruptErr(fmt.Errorf("count the rows of %s: %w", t.Name, err))
			}
		case Recopy:
			if n, ok := compared[t]; ok {
				// Counted by the comparison; nothing to copy if kept.
				if !t.keep {
					t.remaining = n
				}
				break
			}
			if err := p.src.QueryRowContext(ctx, q).Scan(&t.remaining); err != nil {
				return corruptErr(fmt.Errorf("count the rows of %s: %w", t.Name, err))
			}
		}
		already += t.already
		total += t.already + t.remaining
	}
	p.emit(Event{Type: "plan", Done: already, Total: total})
	for _, t := range p.tables {
		p.emit(Event{Type: "pending", Table: t.Name, Done: t.already, Total: t.already + t.remaining})
	}
	return nil
}
