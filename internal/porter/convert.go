package porter

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"

	"hsops/internal/fault"
)

// kind is how a value is converted, decided by the target column's type as
// PostgreSQL reports it: never by a hand-kept list of columns.
type kind int

const (
	kText kind = iota
	kBool
	kBytes
	kInt
	kFloat
)

func kindOf(targetType string) kind {
	t := strings.ToLower(targetType)
	switch {
	case t == "boolean":
		return kBool
	case t == "bytea":
		return kBytes
	case t == "smallint", t == "integer", t == "bigint":
		return kInt
	case t == "real", t == "double precision", strings.HasPrefix(t, "numeric"):
		return kFloat
	}
	return kText
}

// ConvertError is a value the target column cannot hold. The port stops:
// no row is dropped silently.
type ConvertError struct {
	Table, Column, TargetType string
	RowID                     int64
	Value                     string
}

// Class is a failed port's.
func (e *ConvertError) Class() fault.Class { return fault.PortFailed }

// Hint says how to go on.
func (e *ConvertError) Hint() string {
	return "fix that row in the SQLite database (or a copy of it), then run the same command again: what was copied is kept"
}

func (e *ConvertError) Error() string {
	return fmt.Sprintf("table %s, rowid %d: column %s holds %s, which is not a valid %s", e.Table, e.RowID, e.Column, e.Value, e.TargetType)
}

// fixes counts values the conversion had to repair.
type fixes struct {
	// NUL characters replaced by U+FFFD in text (PostgreSQL text cannot
	// hold U+0000; Synapse's porter drops the whole row).
	NUL int64
	// Invalid UTF-8 sequences replaced by U+FFFD.
	BadUTF8 int64
}

// convert turns a SQLite value into what the target column takes.
func convert(v any, k kind, f *fixes) (any, bool) {
	if v == nil {
		return nil, true
	}
	switch k {
	case kBool:
		switch x := v.(type) {
		case int64:
			return x != 0, true
		case float64:
			return x != 0, true
		case bool:
			return x, true
		case string:
			return parseBool(x)
		case []byte:
			return parseBool(string(x))
		}
	case kBytes:
		switch x := v.(type) {
		case []byte:
			return x, true
		case string:
			return []byte(x), true
		case int64:
			return []byte(strconv.FormatInt(x, 10)), true
		case float64:
			return []byte(strconv.FormatFloat(x, 'g', -1, 64)), true
		}
	case kInt:
		switch x := v.(type) {
		case int64:
			return x, true
		case float64:
			if x == math.Trunc(x) && !math.IsInf(x, 0) {
				return int64(x), true
			}
			return nil, false
		case bool:
			if x {
				return int64(1), true
			}
			return int64(0), true
		case string:
			n, err := strconv.ParseInt(strings.TrimSpace(x), 10, 64)
			return n, err == nil
		case []byte:
			n, err := strconv.ParseInt(strings.TrimSpace(string(x)), 10, 64)
			return n, err == nil
		}
	case kFloat:
		switch x := v.(type) {
		case float64:
			return x, true
		case int64:
			return float64(x), true
		case string:
			n, err := strconv.ParseFloat(strings.TrimSpace(x), 64)
			return n, err == nil
		}
	case kText:
		switch x := v.(type) {
		case string:
			return cleanText(x, f), true
		case []byte:
			return cleanText(string(x), f), true
		case int64:
			return strconv.FormatInt(x, 10), true
		case float64:
			return strconv.FormatFloat(x, 'g', -1, 64), true
		case bool:
			return strconv.FormatBool(x), true
		}
	}
	return nil, false
}

func parseBool(s string) (any, bool) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "1", "t", "true", "y", "yes", "on":
		return true, true
	case "0", "f", "false", "n", "no", "off", "":
		return false, true
	}
	return nil, false
}

// cleanText makes a string storable in PostgreSQL text: NUL and invalid
// UTF-8 become U+FFFD, counted.
func cleanText(s string, f *fixes) string {
	if utf8.ValidString(s) && !strings.ContainsRune(s, 0) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			f.BadUTF8++
			b.WriteRune(utf8.RuneError)
		case r == 0:
			f.NUL++
			b.WriteRune(utf8.RuneError)
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

// describe renders a bad value briefly for an error message.
func describe(v any) string {
	s := fmt.Sprintf("%T %q", v, fmt.Sprint(v))
	if len(s) > 80 {
		s = s[:77] + "..."
	}
	return s
}
