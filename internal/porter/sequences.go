package porter

import (
	"context"
	"database/sql"
	"fmt"
	"regexp"
	"strconv"

	"hsops/internal/db"
	"hsops/internal/sequences"
)

var numericLocalpart = regexp.MustCompile(`^@(\d+):`)

// setSequences moves every sequence of the target ahead of the data it
// hands out ids for: the known homeserver sequences (from the source's
// tables and stream_positions), user_id_seq (the largest numeric
// localpart), and every sequence owned by a column. It never moves a
// sequence backwards, so porting an older snapshot after a newer one is
// harmless.
func (p *porter) setSequences(ctx context.Context) error {
	for _, s := range sequences.Known {
		want, err := sequences.TableMax(ctx, p.src, p.src, s)
		if err != nil {
			return err
		}
		if tgtMax, err := sequences.TableMax(ctx, p.tgt, p.tgt, s); err == nil && tgtMax > want {
			want = tgtMax
		}
		if sm, err := sequences.StreamMax(ctx, p.src, p.src, s.Stream); err == nil && sm > want {
			want = sm
		}
		if s.Floor > 0 && want < s.Floor-1 {
			want = s.Floor - 1
		}
		if err := p.advance(ctx, s.Name, want); err != nil {
			return err
		}
	}
	userMax, err := p.largestNumericLocalpart(ctx)
	if err != nil {
		return err
	}
	if err := p.advance(ctx, "user_id_seq", userMax); err != nil {
		return err
	}
	owned, err := p.tgt.QueryContext(ctx, `SELECT s.relname, t.relname, a.attname FROM pg_depend d
		JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
		JOIN pg_class t ON t.oid = d.refobjid
		JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
		WHERE d.deptype IN ('a', 'i') AND s.relnamespace = current_schema()::regnamespace`)
	if err != nil {
		return fmt.Errorf("list owned sequences: %w", err)
	}
	type own struct{ seq, table, col string }
	var list []own
	for owned.Next() {
		var o own
		if err := owned.Scan(&o.seq, &o.table, &o.col); err != nil {
			owned.Close()
			return err
		}
		list = append(list, o)
	}
	owned.Close()
	for _, o := range list {
		var want int64
		for _, side := range []*db.DB{p.src, p.tgt} {
			ok, err := side.TableExists(ctx, side, o.table)
			if err != nil || !ok {
				continue
			}
			var m sql.NullInt64
			if err := side.QueryRowContext(ctx, "SELECT MAX("+db.QuoteIdent(o.col)+") FROM "+db.QuoteIdent(o.table)).Scan(&m); err == nil && m.Int64 > want {
				want = m.Int64
			}
		}
		if err := p.advance(ctx, o.seq, want); err != nil {
			return err
		}
	}
	return nil
}

// advance sets a sequence so that its next value is want+1, if it is behind.
func (p *porter) advance(ctx context.Context, name string, want int64) error {
	var exists bool
	if err := p.tgt.QueryRowContext(ctx, "SELECT EXISTS (SELECT 1 FROM pg_class WHERE relkind = 'S' AND relname = $1 AND relnamespace = current_schema()::regnamespace)", name).Scan(&exists); err != nil || !exists {
		return err
	}
	var last int64
	var called bool
	if err := p.tgt.QueryRowContext(ctx, "SELECT last_value, is_called FROM "+db.QuoteIdent(name)).Scan(&last, &called); err != nil {
		return fmt.Errorf("read sequence %s: %w", name, err)
	}
	if !called {
		last--
	}
	if want <= last || want < 1 {
		return nil
	}
	if _, err := p.tgt.ExecContext(ctx, "SELECT setval($1, $2, true)", name, want); err != nil {
		return fmt.Errorf("set sequence %s: %w", name, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, c := range p.res.Sequences {
		if c.Name == name {
			p.res.Sequences[i].To = want
			return nil
		}
	}
	p.res.Sequences = append(p.res.Sequences, SequenceChange{Name: name, From: last, To: want})
	return nil
}

// largestNumericLocalpart scans users named like @<digits>:server, as
// Synapse's porter does for user_id_seq.
func (p *porter) largestNumericLocalpart(ctx context.Context) (int64, error) {
	ok, err := p.src.TableExists(ctx, p.src, "users")
	if err != nil || !ok {
		return 0, err
	}
	rows, err := p.src.QueryContext(ctx, "SELECT name FROM users WHERE name >= '@0' AND name < '@a'")
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	var best int64
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return 0, err
		}
		if m := numericLocalpart.FindStringSubmatch(name); m != nil {
			if n, err := strconv.ParseInt(m[1], 10, 64); err == nil && n > best {
				best = n
			}
		}
	}
	return best, rows.Err()
}
