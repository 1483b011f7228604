package catalog

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"hsops/internal/db"
)

func dumpPostgres(ctx context.Context, d *db.DB, skip map[string]bool) ([]string, error) {
	var lines []string
	query := func(what, q string, scan func(*sql.Rows) (string, string, error)) error {
		rows, err := d.QueryContext(ctx, q)
		if err != nil {
			return errf(what, err)
		}
		defer rows.Close()
		for rows.Next() {
			table, line, err := scan(rows)
			if err != nil {
				return errf(what, err)
			}
			if !skip[table] {
				lines = append(lines, line)
			}
		}
		return rows.Err()
	}
	ns := "c.relnamespace = current_schema()::regnamespace"
	err := query("tables", `SELECT c.relname, c.relpersistence FROM pg_class c WHERE c.relkind IN ('r', 'p') AND `+ns,
		func(r *sql.Rows) (string, string, error) {
			var t, p string
			err := r.Scan(&t, &p)
			persistence := map[string]string{"p": "logged", "u": "unlogged", "t": "temporary"}[p]
			return t, fmt.Sprintf("table %s persistence %s", t, persistence), err
		})
	if err == nil {
		err = query("columns", `
			SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
			       coalesce(pg_get_expr(ad.adbin, ad.adrelid), ''), coalesce(array_to_string(a.attoptions, ','), ''),
			       row_number() OVER (PARTITION BY c.oid ORDER BY a.attnum)
			FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
			LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
			WHERE c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped AND `+ns,
			func(r *sql.Rows) (string, string, error) {
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
			})
	}
	if err == nil {
		err = query("constraints", `
			SELECT c.relname, con.conname, pg_get_constraintdef(con.oid), con.convalidated
			FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid WHERE `+ns,
			func(r *sql.Rows) (string, string, error) {
				var t, name, def string
				var valid bool
				err := r.Scan(&t, &name, &def, &valid)
				l := fmt.Sprintf("table %s constraint %s %s", t, name, def)
				if !valid {
					l += " (not validated)"
				}
				return t, l, err
			})
	}
	if err == nil {
		err = query("indexes", `
			SELECT t.relname, i.relname, pg_get_indexdef(i.oid), x.indisvalid
			FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid
			WHERE i.relnamespace = current_schema()::regnamespace`,
			func(r *sql.Rows) (string, string, error) {
				var t, name, def string
				var valid bool
				err := r.Scan(&t, &name, &def, &valid)
				def = strings.ReplaceAll(def, " "+currentSchemaPrefix(def), " ")
				l := fmt.Sprintf("index %s on %s: %s", name, t, def)
				if !valid {
					l += " (invalid)"
				}
				return t, l, err
			})
	}
	if err == nil {
		err = query("sequences", `
			SELECT c.relname, format_type(s.seqtypid, NULL), s.seqstart, s.seqincrement, s.seqmin, s.seqmax, s.seqcycle,
			       coalesce((SELECT t.relname || '.' || a.attname FROM pg_depend dep
			                 JOIN pg_class t ON t.oid = dep.refobjid
			                 JOIN pg_attribute a ON a.attrelid = dep.refobjid AND a.attnum = dep.refobjsubid
			                 WHERE dep.objid = c.oid AND dep.deptype IN ('a', 'i') LIMIT 1), '')
			FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid WHERE `+ns,
			func(r *sql.Rows) (string, string, error) {
				var (
					name, typ, owner      string
					start, inc, min, maxv int64
					cycle                 bool
				)
				err := r.Scan(&name, &typ, &start, &inc, &min, &maxv, &cycle, &owner)
				return "", fmt.Sprintf("sequence %s %s start %d increment %d min %d max %d cycle %v owned by %q", name, typ, start, inc, min, maxv, cycle, owner), err
			})
	}
	if err == nil {
		err = query("triggers", `
			SELECT c.relname, t.tgname, pg_get_triggerdef(t.oid)
			FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid WHERE NOT t.tgisinternal AND `+ns,
			func(r *sql.Rows) (string, string, error) {
				var tbl, name, def string
				err := r.Scan(&tbl, &name, &def)
				return tbl, fmt.Sprintf("trigger %s on %s: %s", name, tbl, def), err
			})
	}
	if err == nil {
		err = query("functions", `
			SELECT p.proname, pg_get_function_identity_arguments(p.oid), p.prosrc
			FROM pg_proc p WHERE p.pronamespace = current_schema()::regnamespace`,
			func(r *sql.Rows) (string, string, error) {
				var name, args, src string
				err := r.Scan(&name, &args, &src)
				return "", fmt.Sprintf("function %s(%s): %s", name, args, normalizeSQL(src)), err
			})
	}
	if err != nil {
		return nil, err
	}
	return lines, nil
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
