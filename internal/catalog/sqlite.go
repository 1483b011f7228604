package catalog

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"hsops/internal/db"
)

// ftsShadow reports whether a table is an FTS shadow table of one of the
// virtual tables.
func ftsShadow(name string, virtual map[string]bool) bool {
	for v := range virtual {
		for _, suffix := range []string{"_data", "_idx", "_content", "_docsize", "_config", "_segments", "_segdir", "_stat"} {
			if name == v+suffix {
				return true
			}
		}
	}
	return false
}

type master struct {
	typ, name, table string
	sql              sql.NullString
}

func dumpSQLite(ctx context.Context, d *db.DB, skip map[string]bool) ([]string, error) {
	rows, err := d.QueryContext(ctx, "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'")
	if err != nil {
		return nil, errf("sqlite_master", err)
	}
	var objs []master
	for rows.Next() {
		var m master
		if err := rows.Scan(&m.typ, &m.name, &m.table, &m.sql); err != nil {
			rows.Close()
			return nil, err
		}
		objs = append(objs, m)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	virtual := map[string]bool{}
	for _, m := range objs {
		if m.typ == "table" && strings.HasPrefix(strings.ToUpper(strings.TrimSpace(m.sql.String)), "CREATE VIRTUAL") {
			virtual[m.name] = true
		}
	}
	var lines []string
	for _, m := range objs {
		if skip[m.table] || ftsShadow(m.table, virtual) {
			continue
		}
		switch m.typ {
		case "table":
			tl, err := sqliteTable(ctx, d, m, virtual[m.name])
			if err != nil {
				return nil, err
			}
			lines = append(lines, tl...)
		case "index":
			if m.sql.Valid {
				lines = append(lines, fmt.Sprintf("index %s on %s: %s", m.name, m.table, normalizeSQL(m.sql.String)))
			}
		case "trigger":
			lines = append(lines, fmt.Sprintf("trigger %s on %s: %s", m.name, m.table, normalizeSQL(m.sql.String)))
		case "view":
			lines = append(lines, fmt.Sprintf("view %s: %s", m.name, normalizeSQL(m.sql.String)))
		}
	}
	return lines, nil
}

func sqliteTable(ctx context.Context, d *db.DB, m master, virtual bool) ([]string, error) {
	t := m.name
	if virtual {
		return []string{fmt.Sprintf("table %s virtual %s", t, normalizeSQL(m.sql.String[strings.Index(strings.ToLower(m.sql.String), "using"):]))}, nil
	}
	lines := []string{"table " + t}
	cols, err := sqliteColumns(ctx, d, t)
	if err != nil {
		return nil, err
	}
	fks, err := sqliteForeignKeys(ctx, d, t)
	if err != nil {
		return nil, err
	}
	lines = append(lines, cols...)
	lines = append(lines, fks...)
	return append(lines, sqliteClauses(t, m.sql.String)...), nil
}

// sqliteColumns describes a table's columns, from the pragma.
func sqliteColumns(ctx context.Context, d *db.DB, t string) ([]string, error) {
	rows, err := d.QueryContext(ctx, "SELECT cid, name, type, \"notnull\", dflt_value, pk FROM pragma_table_info(?) ORDER BY cid", t)
	if err != nil {
		return nil, errf("columns of "+t, err)
	}
	defer rows.Close()
	var lines []string
	for rows.Next() {
		var (
			cid, notnull, pk int
			name, typ        string
			dflt             sql.NullString
		)
		if err := rows.Scan(&cid, &name, &typ, &notnull, &dflt, &pk); err != nil {
			return nil, err
		}
		l := fmt.Sprintf("table %s column %02d %s %s", t, cid, name, strings.ToLower(typ))
		if notnull != 0 {
			l += " not null"
		}
		if dflt.Valid {
			l += " default " + strings.ToLower(dflt.String)
		}
		if pk != 0 {
			l += fmt.Sprintf(" pk%d", pk)
		}
		lines = append(lines, l)
	}
	return lines, rows.Err()
}

// sqliteForeignKeys describes a table's foreign keys, from the pragma
// (column-level and table-level alike).
func sqliteForeignKeys(ctx context.Context, d *db.DB, t string) ([]string, error) {
	fk, err := d.QueryContext(ctx, `SELECT id, "table", "from", "to", on_update, on_delete, match FROM pragma_foreign_key_list(?) ORDER BY id, seq`, t)
	if err != nil {
		return nil, errf("foreign keys of "+t, err)
	}
	defer fk.Close()
	type fkey struct {
		ref, from, to, onUpdate, onDelete, match string
	}
	keys := map[int]*fkey{}
	var order []int
	for fk.Next() {
		var (
			id                                  int
			ref, from, onUpdate, onDelete, mtch string
			to                                  sql.NullString
		)
		if err := fk.Scan(&id, &ref, &from, &to, &onUpdate, &onDelete, &mtch); err != nil {
			return nil, err
		}
		k, ok := keys[id]
		if !ok {
			k = &fkey{ref: ref, onUpdate: onUpdate, onDelete: onDelete, match: mtch}
			keys[id] = k
			order = append(order, id)
		} else {
			k.from += ","
			k.to += ","
		}
		k.from += from
		k.to += to.String
	}
	if err := fk.Err(); err != nil {
		return nil, err
	}
	var lines []string
	for _, id := range order {
		k := keys[id]
		lines = append(lines, fmt.Sprintf("table %s foreign key (%s) references %s(%s) on update %s on delete %s match %s",
			t, k.from, k.ref, k.to, strings.ToLower(k.onUpdate), strings.ToLower(k.onDelete), strings.ToLower(k.match)))
	}
	return lines, nil
}

// sqliteClauses lists the unique, check and primary-key clauses of a
// table, and deferrability, which only the table's SQL records.
func sqliteClauses(t, sqlText string) []string {
	open, closeIdx := strings.Index(sqlText, "("), strings.LastIndex(sqlText, ")")
	if open < 0 || closeIdx <= open {
		return nil
	}
	var lines []string
	for _, item := range SplitTopLevel(StripComments(sqlText[open+1 : closeIdx])) {
		n := normalizeSQL(item)
		first := strings.SplitN(n, " ", 2)[0]
		first = strings.SplitN(first, "(", 2)[0]
		switch first {
		case "constraint", "unique", "check", "primary", "foreign":
			lines = append(lines, fmt.Sprintf("table %s clause %s", t, n))
		default:
			// A column definition: keep its inline constraints, which
			// the pragmas do not fully show (CHECK, DEFERRABLE).
			if strings.Contains(n, " check") || strings.Contains(n, "deferrable") {
				lines = append(lines, fmt.Sprintf("table %s column-clause %s", t, n))
			}
		}
	}
	return lines
}
