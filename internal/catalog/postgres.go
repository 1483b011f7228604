package catalog

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"hsops/internal/db"
)

// pgSection is one kind of object a PostgreSQL dump lists: the query that
// finds the objects of the current schema, and how a row becomes a line
// (with the table it belongs to, "" for none, so that excluded tables'
// objects are left out).
type pgSection struct {
	what  string
	query string
	scan  func(*sql.Rows) (table, line string, err error)
}

// pgInSchema restricts pg_class rows (alias c) to the current schema.
const pgInSchema = "c.relnamespace = current_schema()::regnamespace"

// pgSections are the objects a PostgreSQL dump lists, in order.
var pgSections = []pgSection{
	{"tables", `SELECT c.relname, c.relpersistence FROM pg_class c WHERE c.relkind IN ('r', 'p') AND ` + pgInSchema, scanPGTable},
	{"columns", `
		SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
		       coalesce(pg_get_expr(ad.adbin, ad.adrelid), ''), coalesce(array_to_string(a.attoptions, ','), ''),
		       row_number() OVER (PARTITION BY c.oid ORDER BY a.attnum)
		FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
		LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
		WHERE c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped AND ` + pgInSchema, scanPGColumn},
	{"constraints", `
		SELECT c.relname, con.conname, pg_get_constraintdef(con.oid), con.convalidated
		FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid WHERE ` + pgInSchema, scanPGConstraint},
	{"indexes", `
		SELECT t.relname, i.relname, pg_get_indexdef(i.oid), x.indisvalid
		FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid
		WHERE i.relnamespace = current_schema()::regnamespace`, scanPGIndex},
	{"sequences", `
		SELECT c.relname, format_type(s.seqtypid, NULL), s.seqstart, s.seqincrement, s.seqmin, s.seqmax, s.seqcycle,
		       coalesce((SELECT t.relname || '.' || a.attname FROM pg_depend dep
		                 JOIN pg_class t ON t.oid = dep.refobjid
		                 JOIN pg_attribute a ON a.attrelid = dep.refobjid AND a.attnum = dep.refobjsubid
		                 WHERE dep.objid = c.oid AND dep.deptype IN ('a', 'i') LIMIT 1), '')
		FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid WHERE ` + pgInSchema, scanPGSequence},
	{"triggers", `
		SELECT c.relname, t.tgname, pg_get_triggerdef(t.oid)
		FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid WHERE NOT t.tgisinternal AND ` + pgInSchema, scanPGTrigger},
	{"functions", `
		SELECT p.proname, pg_get_function_identity_arguments(p.oid), p.prosrc
		FROM pg_proc p WHERE p.pronamespace = current_schema()::regnamespace`, scanPGFunction},
}

func dumpPostgres(ctx context.Context, d *db.DB, skip map[string]bool) ([]string, error) {
	var lines []string
	for _, s := range pgSections {
		more, err := s.dump(ctx, d, skip)
		if err != nil {
			return nil, err
		}
		lines = append(lines, more...)
	}
	return lines, nil
}

func (s pgSection) dump(ctx context.Context, d *db.DB, skip map[string]bool) ([]string, error) {
	rows, err := d.QueryContext(ctx, s.query)
	if err != nil {
		return nil, errf(s.what, err)
	}
	defer rows.Close()
	var lines []string
	for rows.Next() {
		table, line, err := s.scan(rows)
		if err != nil {
			return nil, errf(s.what, err)
		}
		if !skip[table] {
			lines = append(lines, line)
		}
	}
	return lines, rows.Err()
}

func scanPGTable(r *sql.Rows) (string, string, error) {
	var t, p string
	err := r.Scan(&t, &p)
	persistence := map[string]string{"p": "logged", "u": "unlogged", "t": "temporary"}[p]
	return t, fmt.Sprintf("table %s persistence %s", t, persistence), err
}

func scanPGColumn(r *sql.Rows) (string, string, error) {
	var (
		t, name, typ, def, opts string
		notnull                 bool
		pos                     int
	)
	err := r.Scan(&t, &name, &typ, &notnull, &def, &opts, &pos)
	l := fmt.Sprintf("table %s column %02d %s %s", t, pos-1, name, typ)
	if notnull {
		l += " not null"
	}
	if def != "" {
		l += " default " + def
	}
	if opts != "" {
		l += " options " + opts
	}
	return t, l, err
}

func scanPGConstraint(r *sql.Rows) (string, string, error) {
	var t, name, def string
	var valid bool
	err := r.Scan(&t, &name, &def, &valid)
	l := fmt.Sprintf("table %s constraint %s %s", t, name, def)
	if !valid {
		l += " (not validated)"
	}
	return t, l, err
}

func scanPGIndex(r *sql.Rows) (string, string, error) {
	var t, name, def string
	var valid bool
	err := r.Scan(&t, &name, &def, &valid)
	def = strings.ReplaceAll(def, " "+currentSchemaPrefix(def), " ")
	l := fmt.Sprintf("index %s on %s: %s", name, t, def)
	if !valid {
		l += " (invalid)"
	}
	return t, l, err
}

func scanPGSequence(r *sql.Rows) (string, string, error) {
	var (
		name, typ, owner      string
		start, inc, min, maxv int64
		cycle                 bool
	)
	err := r.Scan(&name, &typ, &start, &inc, &min, &maxv, &cycle, &owner)
	return "", fmt.Sprintf("sequence %s %s start %d increment %d min %d max %d cycle %v owned by %q", name, typ, start, inc, min, maxv, cycle, owner), err
}

func scanPGTrigger(r *sql.Rows) (string, string, error) {
	var tbl, name, def string
	err := r.Scan(&tbl, &name, &def)
	return tbl, fmt.Sprintf("trigger %s on %s: %s", name, tbl, def), err
}

func scanPGFunction(r *sql.Rows) (string, string, error) {
	var name, args, src string
	err := r.Scan(&name, &args, &src)
	return "", fmt.Sprintf("function %s(%s): %s", name, args, normalizeSQL(src)), err
}

// currentSchemaPrefix returns "public." when an index definition is schema
// qualified, so that dumps from different schemas compare equal.
func currentSchemaPrefix(def string) string {
	i := strings.Index(def, " ON ")
	if i < 0 {
		return "\x00"
	}
	rest := def[i+4:]
	rest = strings.TrimPrefix(rest, "ONLY ")
	if dot := strings.Index(rest, "."); dot > 0 && !strings.Contains(rest[:dot], " ") {
		return rest[:dot+1]
	}
	return "\x00"
}
