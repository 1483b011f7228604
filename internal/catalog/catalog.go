// Package catalog dumps a database's schema as canonical lines, so that two
// databases can be compared object by object: tables and their columns in
// order (type, nullability, default, options), constraints, indexes,
// sequences, triggers and functions.
//
// The same logical schema reached by different paths (a snapshot, or an old
// snapshot plus deltas that altered and rebuilt tables) yields the same
// lines. Derived objects (SQLite FTS shadow tables, PostgreSQL internal
// triggers) are left out; values are never dumped, only definitions.
package catalog

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"hsops/internal/db"
)

// Catalog is a schema as sorted canonical lines.
type Catalog struct {
	Lines []string
}

// Options tune a dump.
type Options struct {
	// Exclude lists tables left out (with their indexes and triggers).
	Exclude []string
}

// Dump reads the schema of a database.
func Dump(ctx context.Context, d *db.DB, opts Options) (*Catalog, error) {
	var (
		lines []string
		err   error
	)
	skip := map[string]bool{}
	for _, t := range opts.Exclude {
		skip[t] = true
	}
	if d.Engine == db.Postgres {
		lines, err = dumpPostgres(ctx, d, skip)
	} else {
		lines, err = dumpSQLite(ctx, d, skip)
	}
	if err != nil {
		return nil, err
	}
	sort.Strings(lines)
	return &Catalog{Lines: lines}, nil
}

// Diff lists the lines only in a ("- ...") and only in b ("+ ...").
func Diff(a, b *Catalog) []string {
	inA := map[string]bool{}
	inB := map[string]bool{}
	for _, l := range a.Lines {
		inA[l] = true
	}
	for _, l := range b.Lines {
		inB[l] = true
	}
	var out []string
	for _, l := range a.Lines {
		if !inB[l] {
			out = append(out, "- "+l)
		}
	}
	for _, l := range b.Lines {
		if !inA[l] {
			out = append(out, "+ "+l)
		}
	}
	return out
}

var spaces = regexp.MustCompile(`\s+`)

// normalizeSQL makes SQL text comparable: no comments, no quotes around
// identifiers, lower case, single spaces, no space inside parentheses.
func normalizeSQL(s string) string {
	s = StripComments(s)
	s = strings.ReplaceAll(s, `"`, "")
	s = strings.ToLower(s)
	s = spaces.ReplaceAllString(s, " ")
	s = strings.ReplaceAll(s, "( ", "(")
	s = strings.ReplaceAll(s, " )", ")")
	s = strings.ReplaceAll(s, " (", "(")
	s = strings.ReplaceAll(s, " ,", ",")
	s = strings.ReplaceAll(s, ", ", ",")
	s = strings.ReplaceAll(s, " if not exists", "")
	s = strings.TrimSuffix(strings.TrimSpace(s), ";")
	return s
}

// StripComments removes SQL comments (-- and /* */) outside quotes.
func StripComments(s string) string {
	var b strings.Builder
	inQuote := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\'' {
			inQuote = !inQuote
		}
		if !inQuote && c == '-' && i+1 < len(s) && s[i+1] == '-' {
			for i < len(s) && s[i] != '\n' {
				i++
			}
			b.WriteByte('\n')
			continue
		}
		if !inQuote && c == '/' && i+1 < len(s) && s[i+1] == '*' {
			end := strings.Index(s[i+2:], "*/")
			if end < 0 {
				break
			}
			i += end + 3
			b.WriteByte(' ')
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// SplitTopLevel splits a parenthesised body on commas that are not nested.
func SplitTopLevel(body string) []string {
	var out []string
	depth, start := 0, 0
	inQuote := false
	for i := 0; i < len(body); i++ {
		switch body[i] {
		case '\'':
			inQuote = !inQuote
		case '(':
			if !inQuote {
				depth++
			}
		case ')':
			if !inQuote {
				depth--
			}
		case ',':
			if depth == 0 && !inQuote {
				out = append(out, strings.TrimSpace(body[start:i]))
				start = i + 1
			}
		}
	}
	if rest := strings.TrimSpace(body[start:]); rest != "" {
		out = append(out, rest)
	}
	return out
}

func errf(what string, err error) error {
	return fmt.Errorf("dump catalog: %s: %w", what, err)
}
