package porter

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"hsops/internal/db"
)

// copyIn streams rows into a table with COPY FROM STDIN: in PostgreSQL's
// binary format when every column's type has a binary form this package
// writes (text, character varying, bytea, the integers, boolean, double
// precision), which spares the server parsing text (a fifth to a third of
// its work on the event tables); otherwise in the text format, whose values
// each column type's input function parses. The statement can carry FREEZE.
// The values are what convert returns: nil, bool, int64, float64, string or
// []byte.
func copyIn(ctx context.Context, pc *pgx.Conn, t *Table, freeze bool, rows pgx.CopyFromSource) (int64, error) {
	cols := make([]string, len(t.Columns))
	binary := true
	for i, c := range t.Columns {
		cols[i] = db.QuoteIdent(c.Name)
		binary = binary && c.bin != binNone
	}
	stmt := "COPY " + db.QuoteIdent(t.Name) + " (" + strings.Join(cols, ", ") + ") FROM STDIN"
	var opts []string
	if binary {
		opts = append(opts, "FORMAT binary")
	}
	if freeze {
		opts = append(opts, "FREEZE")
	}
	if len(opts) > 0 {
		stmt += " WITH (" + strings.Join(opts, ", ") + ")"
	}
	r := &rowReader{src: rows, t: t, binary: binary}
	tag, err := pc.PgConn().CopyFrom(ctx, r, stmt)
	if r.err != nil {
		// The source failed (a value that cannot be converted): its error
		// says which row, PostgreSQL's only that the COPY was aborted.
		return 0, r.err
	}
	return tag.RowsAffected(), err
}

// binEnc is a column's binary COPY encoding.
type binEnc int

const (
	binNone binEnc = iota
	binText
	binBytes
	binInt2
	binInt4
	binInt8
	binBool
	binFloat8
)

// binEncOf is the binary encoding this package writes for a column type
// (format_type's name), or binNone.
func binEncOf(targetType string) binEnc {
	t := strings.ToLower(targetType)
	switch {
	case t == "text", t == "character varying", strings.HasPrefix(t, "character varying("),
		t == "character", strings.HasPrefix(t, "character("):
		return binText
	case t == "bytea":
		return binBytes
	case t == "smallint":
		return binInt2
	case t == "integer":
		return binInt4
	case t == "bigint":
		return binInt8
	case t == "boolean":
		return binBool
	case t == "double precision":
		return binFloat8
	}
	return binNone
}

// rowReader encodes rows in COPY's binary or text format as they are read.
type rowReader struct {
	src    pgx.CopyFromSource
	t      *Table
	binary bool
	buf    []byte
	off    int
	n      int64
	done   bool
	err    error
}

// binaryHeader starts a binary COPY: the signature, no flags, no header
// extension.
var binaryHeader = []byte("PGCOPY\n\xff\r\n\x00\x00\x00\x00\x00\x00\x00\x00\x00")

func (r *rowReader) Read(p []byte) (int, error) {
	for r.off >= len(r.buf) {
		if r.done {
			return 0, io.EOF
		}
		r.buf, r.off = r.buf[:0], 0
		if r.binary && r.n == 0 {
			r.buf = append(r.buf, binaryHeader...)
		}
		for len(r.buf) < 64<<10 {
			if !r.src.Next() {
				r.done = true
				if err := r.src.Err(); err != nil {
					r.err = err
					return 0, err
				}
				if r.binary {
					r.buf = append(r.buf, 0xff, 0xff)
				}
				break
			}
			vals, err := r.src.Values()
			if err != nil {
				r.err = err
				return 0, err
			}
			r.n++
			if !r.binary {
				r.buf = appendTextRow(r.buf, vals)
				continue
			}
			if r.buf, err = appendBinaryRow(r.buf, vals, r.t); err != nil {
				r.err = err
				return 0, err
			}
		}
	}
	n := copy(p, r.buf[r.off:])
	r.off += n
	return n, nil
}

// appendBinaryRow appends one row in COPY's binary format: the field count,
// then each field's length (-1 for NULL) and bytes.
func appendBinaryRow(buf []byte, vals []any, t *Table) ([]byte, error) {
	buf = binary.BigEndian.AppendUint16(buf, uint16(len(vals)))
	for i, v := range vals {
		if v == nil {
			buf = binary.BigEndian.AppendUint32(buf, 0xffffffff)
			continue
		}
		c := t.Columns[i]
		bad := func() ([]byte, error) {
			return nil, &ConvertError{Table: t.Name, Column: c.Name, TargetType: c.TargetType, Value: describe(v)}
		}
		switch c.bin {
		case binText:
			s, ok := v.(string)
			if !ok {
				return bad()
			}
			buf = binary.BigEndian.AppendUint32(buf, uint32(len(s)))
			buf = append(buf, s...)
		case binBytes:
			b, ok := v.([]byte)
			if !ok {
				return bad()
			}
			buf = binary.BigEndian.AppendUint32(buf, uint32(len(b)))
			buf = append(buf, b...)
		case binInt2, binInt4, binInt8:
			n, ok := v.(int64)
			if !ok {
				return bad()
			}
			switch {
			case c.bin == binInt2 && n == int64(int16(n)):
				buf = binary.BigEndian.AppendUint32(buf, 2)
				buf = binary.BigEndian.AppendUint16(buf, uint16(n))
			case c.bin == binInt4 && n == int64(int32(n)):
				buf = binary.BigEndian.AppendUint32(buf, 4)
				buf = binary.BigEndian.AppendUint32(buf, uint32(n))
			case c.bin == binInt8:
				buf = binary.BigEndian.AppendUint32(buf, 8)
				buf = binary.BigEndian.AppendUint64(buf, uint64(n))
			default:
				return bad() // out of the column's range
			}
		case binBool:
			b, ok := v.(bool)
			if !ok {
				return bad()
			}
			buf = binary.BigEndian.AppendUint32(buf, 1)
			if b {
				buf = append(buf, 1)
			} else {
				buf = append(buf, 0)
			}
		case binFloat8:
			f, ok := v.(float64)
			if !ok {
				return bad()
			}
			buf = binary.BigEndian.AppendUint32(buf, 8)
			buf = binary.BigEndian.AppendUint64(buf, math.Float64bits(f))
		default:
			return bad()
		}
	}
	return buf, nil
}

// appendTextRow appends one row: values separated by tabs, NULL as \N,
// backslash, newline, carriage return and tab escaped.
func appendTextRow(buf []byte, vals []any) []byte {
	for i, v := range vals {
		if i > 0 {
			buf = append(buf, '\t')
		}
		switch x := v.(type) {
		case nil:
			buf = append(buf, '\\', 'N')
		case string:
			buf = appendEscaped(buf, x)
		case []byte:
			// bytea's hex input, its backslash escaped for COPY.
			buf = append(buf, '\\', '\\', 'x')
			buf = hex.AppendEncode(buf, x)
		case int64:
			buf = strconv.AppendInt(buf, x, 10)
		case bool:
			if x {
				buf = append(buf, 't')
			} else {
				buf = append(buf, 'f')
			}
		case float64:
			switch {
			case math.IsInf(x, 1):
				buf = append(buf, "Infinity"...)
			case math.IsInf(x, -1):
				buf = append(buf, "-Infinity"...)
			case math.IsNaN(x):
				buf = append(buf, "NaN"...)
			default:
				buf = strconv.AppendFloat(buf, x, 'g', -1, 64)
			}
		default:
			buf = appendEscaped(buf, fmt.Sprint(v))
		}
	}
	return append(buf, '\n')
}

func appendEscaped(buf []byte, s string) []byte {
	start := 0
	for i := 0; i < len(s); i++ {
		var esc byte
		switch s[i] {
		case '\\':
			esc = '\\'
		case '\n':
			esc = 'n'
		case '\r':
			esc = 'r'
		case '\t':
			esc = 't'
		default:
			continue
		}
		buf = append(buf, s[start:i]...)
		buf = append(buf, '\\', esc)
		start = i + 1
	}
	return append(buf, s[start:]...)
}
