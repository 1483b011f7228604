package porter

import (
	"context"
	"database/sql"
	"strings"

	"hsops/internal/db"
	"hsops/schema"
)

func fts5(createSQL string) bool { return strings.Contains(strings.ToLower(createSQL), "fts5") }

// dryRun reports what a port would copy, writing nothing.
func (p *porter) dryRun(ctx context.Context) error {
	if p.tgtSt.Kind == schema.KindEmpty {
		p.note("would create the PostgreSQL schema at version %d with the schema engine", p.srcSt.Version)
	} else if p.mode == "engine" && p.tgtSt.Version < p.srcSt.Version {
		p.note("would upgrade the PostgreSQL schema from %d to %d", p.tgtSt.Version, p.srcSt.Version)
	}
	hasPort := false
	if p.tgtSt.Kind != schema.KindEmpty {
		var err error
		if hasPort, err = p.tgt.TableExists(ctx, p.tgt, "port_from_sqlite3"); err != nil {
			return err
		}
	}
	for _, t := range p.tables {
		r := TableResult{Name: t.Name, Strategy: t.Strategy}
		fwd, bwd := int64(1), int64(0)
		if hasPort {
			err := p.tgt.QueryRowContext(ctx, "SELECT forward_rowid, backward_rowid FROM port_from_sqlite3 WHERE table_name = $1", t.Name).Scan(&fwd, &bwd)
			if err != nil && err != sql.ErrNoRows {
				return err
			}
		}
		q := "SELECT count(*) FROM " + db.QuoteIdent(t.Name)
		switch t.Strategy {
		case AppendOnly:
			if p.tgtSt.Kind != schema.KindEmpty {
				if err := p.tgt.QueryRowContext(ctx, q).Scan(&r.Already); err != nil {
					return err
				}
			}
			if err := p.src.QueryRowContext(ctx, "SELECT (SELECT count(*) FROM "+db.QuoteIdent(t.Name)+" WHERE rowid >= ?) + (SELECT count(*) FROM "+db.QuoteIdent(t.Name)+" WHERE rowid <= ?)", fwd, bwd).Scan(&r.Copied); err != nil {
				return err
			}
		case Search:
			if p.tgtSt.Kind != schema.KindEmpty {
				if err := p.tgt.QueryRowContext(ctx, q).Scan(&r.Already); err != nil {
					return err
				}
			}
			_, count := p.searchQuery()
			if err := p.src.QueryRowContext(ctx, count, fwd).Scan(&r.Copied); err != nil {
				return err
			}
		case Recopy:
			if err := p.src.QueryRowContext(ctx, q).Scan(&r.Copied); err != nil {
				return err
			}
		}
		p.res.Tables = append(p.res.Tables, r)
	}
	return nil
}
