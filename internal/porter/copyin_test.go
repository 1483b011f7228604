package porter

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"hsops/internal/pgtest"
)

// TestCopyIn_BothFormats writes the values convert produces through COPY in
// the binary format (every column type has one this package writes) and in
// the text format (a column type it has none for), and reads them back.
func TestCopyIn_BothFormats(t *testing.T) {
	ctx := context.Background()
	d := openPG(t, pgtest.NewDatabase(t).Config)
	if _, err := d.Exec(`CREATE TABLE b (t TEXT, v VARCHAR(5), c CHAR(3), y BYTEA, s SMALLINT, i INTEGER, n BIGINT, o BOOLEAN, f DOUBLE PRECISION);
		CREATE TABLE x (t TEXT, m NUMERIC, j JSONB, f DOUBLE PRECISION, y BYTEA)`); err != nil {
		t.Fatal(err)
	}
	rows := [][]any{
		{"tab\tnew\nline\\back", "abc", "xy", []byte{0, 1, 0xff}, int64(-32768), int64(math.MaxInt32), int64(math.MinInt64), true, 0.1},
		{nil, nil, nil, nil, nil, nil, nil, nil, nil},
		{"", "", "", []byte{}, int64(0), int64(0), int64(0), false, math.Inf(-1)},
	}
	tables := map[string]*Table{}
	for _, name := range []string{"b", "x"} {
		cols, err := targetColumns(ctx, d, name)
		if err != nil {
			t.Fatal(err)
		}
		tb := &Table{Name: name}
		order := map[string][]string{"b": {"t", "v", "c", "y", "s", "i", "n", "o", "f"}, "x": {"t", "m", "j", "f", "y"}}[name]
		for _, c := range order {
			col, typ, _ := strings.Cut(cols[c], "\x00")
			tb.Columns = append(tb.Columns, Column{Name: col, TargetType: typ, kind: kindOf(typ), bin: binEncOf(typ)})
		}
		tables[name] = tb
	}
	xrows := [][]any{
		{"a\\b", 1.5, `{"k": "v\tw"}`, 2.25, []byte("\\x")},
		{nil, nil, nil, nil, nil},
	}
	err := session(ctx, d, func(pc *pgx.Conn) error {
		if n, err := copyIn(ctx, pc, tables["b"], false, pgx.CopyFromRows(rows)); err != nil || n != 3 {
			return errors.Join(err, errors.New("binary copy"))
		}
		if n, err := copyIn(ctx, pc, tables["x"], false, pgx.CopyFromRows(xrows)); err != nil || n != 2 {
			return errors.Join(err, errors.New("text copy"))
		}
		// A value outside its column's range is refused, not truncated.
		_, err := copyIn(ctx, pc, tables["b"], false, pgx.CopyFromRows([][]any{{"", "", "", nil, int64(40000), nil, nil, nil, nil}}))
		var ce *ConvertError
		if !errors.As(err, &ce) || ce.Column != "s" {
			return errors.Join(err, errors.New("a smallint of 40000 was not refused"))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var got string
	if err := d.QueryRow(`SELECT string_agg(concat_ws('|', coalesce(t, 'NULL'), v, c, encode(y, 'hex'), s, i, n, o, f), ';' ORDER BY n NULLS LAST) FROM b`).Scan(&got); err != nil {
		t.Fatal(err)
	}
	if want := "tab\tnew\nline\\back|abc|xy |0001ff|-32768|2147483647|-9223372036854775808|t|0.1;||   ||0|0|0|f|-Infinity;NULL"; got != want {
		t.Errorf("binary copy read back:\n got %q\nwant %q", got, want)
	}
	if err := d.QueryRow(`SELECT string_agg(concat_ws('|', coalesce(t, 'NULL'), m, j ->> 'k', f, encode(y, 'escape')), ';') FROM x`).Scan(&got); err != nil {
		t.Fatal(err)
	}
	if want := "a\\b|1.5|v\tw|2.25|\\\\x;NULL"; got != want {
		t.Errorf("text copy read back:\n got %q\nwant %q", got, want)
	}
}
