package rollback

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"strings"

	"hsops/internal/db"
	"hsops/internal/fault"
	"hsops/schema"
	"hsops/schema/engine"
)

//go:embed main state
var engineFiles embed.FS

// Set is the reverses of a schema set's deltas.
type Set struct {
	Schema *schema.Set
	// FS holds the reverse SQL files, at the paths of their deltas.
	FS fs.FS
	// Go are the reverses written in Go, keyed by their delta's path.
	Go map[string]GoReverse
}

// GoReverse is a reverse written in Go. Header holds its summary and
// declarations, in the syntax of a reverse SQL file's header.
type GoReverse struct {
	Header string
	Run    func(ctx context.Context, tx *sql.Tx, env schema.Env) error
}

// Engine returns the reverses of the engine's schema.
func Engine() *Set {
	return &Set{Schema: engine.Schema(), FS: engineFiles, Go: engineGoReverses()}
}

// Reverse undoes one delta.
type Reverse struct {
	Delta schema.Delta
	// Path is the reverse's file, or its delta's path for a Go reverse.
	Path string
	// Summary says what the reverse does, in one line.
	Summary string
	SQL     string
	Go      *GoReverse
	Decl    Declarations
}

// Declarations are what a reverse says about the data it touches.
type Declarations struct {
	// Loses are data the reverse destroys: a rollback that would destroy
	// any is refused unless data loss is allowed.
	Loses []Data
	// Drops are derived or transient data the reverse removes: they are
	// shown, not refused.
	Drops []Data
	// Keeps are columns the reverse leaves filled with values that the
	// delta's background update derived (the older schema reads them the
	// same way).
	Keeps []Data
	// RestoresEmpty are tables the delta dropped with their rows, which
	// the reverse recreates empty.
	RestoresEmpty []Data
	// Irreversible, when set, says why the reverse cannot give back what
	// the delta took: a rollback through it is refused unless data loss is
	// allowed, or Affects (when declared) holds nothing in the database.
	Irreversible string
	// Affects is the data whose loss makes the reverse irreversible (the
	// events whose hashes are not given back): with no rows, there is
	// nothing to lose.
	Affects *Data
	// Dequeues are the background updates the reverse removes from the
	// queue; Queues those it queues (again).
	Dequeues, Queues []string
}

// Data names data: a table, a column, or the rows of a table that match a
// condition.
type Data struct {
	// Kind is "table", "column" or "rows".
	Kind   string `json:"kind"`
	Table  string `json:"table"`
	Column string `json:"column,omitempty"`
	// Where restricts the rows (or, for a column, the values) that count.
	Where string `json:"where,omitempty"`
	// Why says what the data is, for people.
	Why string `json:"why,omitempty"`
}

// String renders the data as in a declaration, without the reason.
func (d Data) String() string {
	s := d.Table
	if d.Kind == "column" {
		s += "." + d.Column
	}
	if d.Where != "" {
		s += " where " + d.Where
	}
	return s
}

// ErrNoReverse means a delta has neither a reverse nor a declaration that
// it cannot be reversed: the rollback set is incomplete.
var ErrNoReverse = fault.New(fault.Internal, "no reverse for delta", "")

// Lookup finds the reverse of a delta on an engine: a Go reverse registered
// under the delta's path, else the file at the delta's path with the
// engine's suffix (for a delta shared by both engines whose reverse is
// not), else the file at the delta's path.
func (s *Set) Lookup(d schema.Delta, e db.Engine) (Reverse, error) {
	r := Reverse{Delta: d, Path: d.Path}
	header := ""
	if g, ok := s.Go[d.Path]; ok {
		g := g
		r.Go = &g
		header = g.Header
	} else {
		candidates := []string{d.Path}
		if strings.HasSuffix(d.Path, ".sql") {
			candidates = []string{d.Path + "." + string(e), d.Path}
		}
		found := false
		for _, p := range candidates {
			data, err := fs.ReadFile(s.FS, p)
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return Reverse{}, fmt.Errorf("read reverse %s: %w", p, err)
			}
			r.Path, r.SQL, header, found = p, string(data), string(data), true
			break
		}
		if !found {
			return Reverse{}, fmt.Errorf("%w %s (%s)", ErrNoReverse, d.Path, e)
		}
	}
	decl, summary, err := parseHeader(header)
	if err != nil {
		return Reverse{}, fmt.Errorf("reverse %s: %w", r.Path, err)
	}
	if summary == "" {
		return Reverse{}, fmt.Errorf("reverse %s: the first line must be a -- comment saying what it does", r.Path)
	}
	r.Decl, r.Summary = decl, summary
	return r, nil
}

var (
	declLine = regexp.MustCompile(`^--\s*(loses|drops|keeps|restores-empty|irreversible|affects|queues|dequeues):\s*(.*)$`)
	dataSpec = regexp.MustCompile(`^(table|column|rows)\s+([a-z_][a-z0-9_]*)(?:\.([a-z_][a-z0-9_]*))?(?:\s+WHERE\s+(.*?))?(?:\s+\(([^()]*)\))?$`)
)

// parseHeader reads the summary (the first comment line) and the
// declarations of a reverse:
//
//	-- <summary>
//	-- loses: table <t> (<why>)
//	-- loses: column <t>.<c> [WHERE <cond>] (<why>)
//	-- loses: rows <t> WHERE <cond> (<why>)
//	-- drops: ...            (same forms: derived or transient data)
//	-- keeps: column <t>.<c> (<why>)
//	-- restores-empty: table <t> (<why>)
//	-- irreversible: <why>
//	-- affects: table <t> (<why>)     (what an irreversible reverse loses: none when it holds no rows)
//	-- dequeues: <update>, <update>   (background updates removed)
//	-- queues: <update>               (background updates queued again)
func parseHeader(text string) (Declarations, string, error) {
	var (
		d       Declarations
		summary string
	)
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "--") {
			continue
		}
		m := declLine.FindStringSubmatch(line)
		if m == nil {
			if summary == "" {
				summary = strings.TrimSpace(strings.TrimPrefix(line, "--"))
			}
			continue
		}
		if m[1] == "queues" || m[1] == "dequeues" {
			var names []string
			for _, n := range strings.Split(m[2], ",") {
				if n = strings.TrimSpace(n); n != "" {
					names = append(names, n)
				}
			}
			if len(names) == 0 {
				return d, "", fmt.Errorf("%s: needs update names", m[1])
			}
			if m[1] == "queues" {
				d.Queues = append(d.Queues, names...)
			} else {
				d.Dequeues = append(d.Dequeues, names...)
			}
			continue
		}
		if m[1] == "irreversible" {
			if m[2] == "" {
				return d, "", fmt.Errorf("irreversible: needs a reason")
			}
			d.Irreversible = m[2]
			continue
		}
		spec := dataSpec.FindStringSubmatch(m[2])
		if spec == nil {
			return d, "", fmt.Errorf("cannot read declaration %q", line)
		}
		data := Data{Kind: spec[1], Table: spec[2], Column: spec[3], Where: spec[4], Why: spec[5]}
		switch {
		case data.Kind == "column" && data.Column == "":
			return d, "", fmt.Errorf("%q: a column is named table.column", line)
		case data.Kind != "column" && data.Column != "":
			return d, "", fmt.Errorf("%q: only a column declaration names a column", line)
		case data.Kind == "rows" && data.Where == "":
			return d, "", fmt.Errorf("%q: rows need a WHERE condition", line)
		}
		switch m[1] {
		case "loses":
			d.Loses = append(d.Loses, data)
		case "drops":
			d.Drops = append(d.Drops, data)
		case "keeps":
			d.Keeps = append(d.Keeps, data)
		case "restores-empty":
			d.RestoresEmpty = append(d.RestoresEmpty, data)
		case "affects":
			d.Affects = &data
		}
	}
	if d.Affects != nil && d.Irreversible == "" {
		return d, "", fmt.Errorf("affects: only an irreversible reverse declares what it affects")
	}
	return d, summary, nil
}

// run executes the reverse in tx.
func (r Reverse) run(ctx context.Context, tx *sql.Tx, env schema.Env) error {
	if r.Go != nil {
		return r.Go.Run(ctx, tx, env)
	}
	_, err := tx.ExecContext(ctx, r.SQL)
	return err
}
