// Package rowsum computes an order-independent checksum of a table's
// contents, comparable across SQLite and PostgreSQL: each row is rendered in
// a canonical text form (booleans as t/f, bytes as hex, integers in decimal,
// NULL distinct from every value), hashed with FNV-1a, and the hashes are
// summed. Equal multisets of rows give equal sums whatever the row order,
// and duplicated rows count twice.
package rowsum

import (
	"context"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"time"

	"hsops/internal/db"
)

// Kind tells how to render a column's values.
type Kind int

// The kinds of column rendering.
const (
	Text Kind = iota
	Integer
	Boolean
	Bytes
	Float
)

// Sum is a table's row count and content hash.
type Sum struct {
	Rows int64  `json:"rows"`
	Hash uint64 `json:"hash"`
}

func (s Sum) String() string { return fmt.Sprintf("%d rows, %016x", s.Rows, s.Hash) }

// Column is a column to include and how to render it.
type Column struct {
	Name string
	Kind Kind
}

// Table sums the named columns of a table (or of a query: from may be a
// table name or a parenthesised subquery with an alias).
func Table(ctx context.Context, q db.Querier, from string, cols []Column) (Sum, error) {
	names := make([]string, len(cols))
	for i, c := range cols {
		names[i] = db.QuoteIdent(c.Name)
	}
	rows, err := q.QueryContext(ctx, "SELECT "+strings.Join(names, ", ")+" FROM "+from)
	if err != nil {
		return Sum{}, fmt.Errorf("checksum %s: %w", from, err)
	}
	defer rows.Close()
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	var s Sum
	var buf []byte
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return Sum{}, fmt.Errorf("checksum %s: %w", from, err)
		}
		buf = buf[:0]
		for i, v := range vals {
			buf = Field(buf, v, cols[i].Kind)
		}
		s.Add(buf)
	}
	return s, rows.Err()
}

// Field appends a value of a row: its canonical form and the separator.
func Field(buf []byte, v any, k Kind) []byte {
	return append(Render(buf, v, k), 0x1f)
}

// Add counts a row, rendered by Field, into the sum (rows are summed in
// any order).
func (s *Sum) Add(row []byte) {
	h := fnv.New64a()
	_, _ = h.Write(row)
	s.Hash += h.Sum64()
	s.Rows++
}

// Render appends the canonical form of a value.
func Render(buf []byte, v any, k Kind) []byte {
	if v == nil {
		return append(buf, 0)
	}
	switch k {
	case Boolean:
		if db.Truthy(v) {
			return append(buf, 't')
		}
		return append(buf, 'f')
	case Bytes:
		var b []byte
		switch x := v.(type) {
		case []byte:
			b = x
		case string:
			b = []byte(x)
		default:
			b = []byte(fmt.Sprint(x))
		}
		buf = append(buf, 'x')
		return hex.AppendEncode(buf, b)
	case Integer:
		switch x := v.(type) {
		case int64:
			return strconv.AppendInt(buf, x, 10)
		case int32:
			return strconv.AppendInt(buf, int64(x), 10)
		case float64:
			return strconv.AppendInt(buf, int64(x), 10)
		case []byte:
			return append(buf, x...)
		case string:
			return append(buf, x...)
		}
	case Float:
		switch x := v.(type) {
		case float64:
			return strconv.AppendFloat(buf, x, 'g', -1, 64)
		case int64:
			return strconv.AppendFloat(buf, float64(x), 'g', -1, 64)
		}
	}
	switch x := v.(type) {
	case []byte:
		return append(buf, x...)
	case string:
		return append(buf, x...)
	case int64:
		return strconv.AppendInt(buf, x, 10)
	case float64:
		return strconv.AppendFloat(buf, x, 'g', -1, 64)
	case bool:
		if x {
			return append(buf, 't')
		}
		return append(buf, 'f')
	case time.Time:
		return append(buf, x.UTC().Format(time.RFC3339Nano)...)
	}
	return append(buf, fmt.Sprint(v)...)
}

// KindOf maps a declared or catalog type name to a rendering kind.
func KindOf(typ string) Kind {
	t := strings.ToLower(typ)
	switch {
	case strings.Contains(t, "bool"):
		return Boolean
	case strings.Contains(t, "bytea"), strings.Contains(t, "blob"):
		return Bytes
	case strings.Contains(t, "int"), t == "bigserial", t == "serial":
		return Integer
	case strings.Contains(t, "real"), strings.Contains(t, "double"), strings.Contains(t, "float"), strings.Contains(t, "numeric"):
		return Float
	}
	return Text
}

// Columns lists a table's columns with their kinds from the database's own
// declared types.
func Columns(ctx context.Context, d *db.DB, q db.Querier, table string) ([]Column, error) {
	var query string
	if d.Engine == db.Postgres {
		query = `SELECT column_name, data_type FROM information_schema.columns
			WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position`
	} else {
		query = `SELECT name, type FROM pragma_table_info(?) ORDER BY cid`
	}
	rows, err := q.QueryContext(ctx, query, table)
	if err != nil {
		return nil, fmt.Errorf("columns of %s: %w", table, err)
	}
	defer rows.Close()
	var out []Column
	for rows.Next() {
		var name, typ string
		if err := rows.Scan(&name, &typ); err != nil {
			return nil, err
		}
		out = append(out, Column{Name: name, Kind: KindOf(typ)})
	}
	return out, rows.Err()
}
