package rehearse

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"hsops/internal/fault"
)

// ErrNotCopyable means the snapshot copy cannot reproduce something in the
// source database; the template copy could, with the homeserver stopped.
var ErrNotCopyable = fault.New(fault.Backup, "the database has objects the snapshot copy does not reproduce",
	"nothing was changed: stop the homeserver (and every other session on the database) so that the copy is made with CREATE DATABASE ... TEMPLATE, then rehearse again")

// pgSchema is a PostgreSQL schema as the statements that rebuild it, read
// inside the copy's snapshot.
type pgSchema struct {
	Schema    string
	Sequences []pgSequence
	Functions []string
	Tables    []pgTable
	Views     []string
	// Keys are primary keys, unique and exclusion constraints; Checks are
	// check constraints; Foreign are foreign keys (after Keys); Indexes
	// the indexes no constraint owns.
	Keys, Checks, Foreign, Indexes []pgStmt
	Triggers                       []string
	// ColumnOptions are per-column planner options (n_distinct ...).
	ColumnOptions []string
	// Skipped are the invalid indexes (a failed CREATE INDEX
	// CONCURRENTLY) that are not copied.
	Skipped []string
}

// pgStmt is a statement and the table it changes.
type pgStmt struct {
	Table, SQL string
}

type pgSequence struct {
	Name, Create string
	OwnedBy      string
	LastValue    int64
	IsCalled     bool
}

type pgTable struct {
	Name    string
	Create  string
	Columns []string
	// Bytes is the table's heap size, for progress.
	Bytes int64
}

func qi(name string) string { return pgx.Identifier{name}.Sanitize() }

// readPGSchema reads the current schema's objects through q (a session in
// the snapshot's transaction).
func readPGSchema(ctx context.Context, q *sql.Conn) (*pgSchema, error) {
	s := &pgSchema{}
	var version int
	if err := q.QueryRowContext(ctx, "SELECT current_schema(), current_setting('server_version_num')::int").Scan(&s.Schema, &version); err != nil {
		return nil, fmt.Errorf("read the schema: %w", err)
	}
	if err := refuseUnsupported(ctx, q, version); err != nil {
		return nil, err
	}
	for _, read := range []func(context.Context, *sql.Conn, *pgSchema) error{
		readSequences, readFunctions, readTables, readViews, readConstraints, readIndexes, readTriggers,
	} {
		if err := read(ctx, q, s); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// inSchema restricts a catalog query to the current schema.
const inSchema = "current_schema()::regnamespace"

// readSequences reads the sequences, how to create them, the column each
// belongs to and their values at the snapshot.
func readSequences(ctx context.Context, q *sql.Conn, s *pgSchema) error {
	rows, err := q.QueryContext(ctx, `SELECT c.relname, format_type(s.seqtypid, NULL), s.seqstart, s.seqincrement, s.seqmin, s.seqmax, s.seqcache, s.seqcycle,
		coalesce((SELECT quote_ident(t.relname) || '.' || quote_ident(a.attname) FROM pg_depend d
			JOIN pg_class t ON t.oid = d.refobjid JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
			WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'a' LIMIT 1), '')
		FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid WHERE c.relnamespace = `+inSchema+` ORDER BY c.relname`)
	if err != nil {
		return fmt.Errorf("read sequences: %w", err)
	}
	err = scanAll(rows, func() error {
		var (
			sq                        pgSequence
			typ                       string
			start, inc, min, max, cch int64
			cycle                     bool
		)
		if err := rows.Scan(&sq.Name, &typ, &start, &inc, &min, &max, &cch, &cycle, &sq.OwnedBy); err != nil {
			return err
		}
		cyc := "NO CYCLE"
		if cycle {
			cyc = "CYCLE"
		}
		sq.Create = fmt.Sprintf("CREATE SEQUENCE %s AS %s INCREMENT BY %d MINVALUE %d MAXVALUE %d START WITH %d CACHE %d %s",
			qi(sq.Name), typ, inc, min, max, start, cch, cyc)
		s.Sequences = append(s.Sequences, sq)
		return nil
	})
	if err != nil {
		return err
	}
	for i := range s.Sequences {
		sq := &s.Sequences[i]
		if err := q.QueryRowContext(ctx, "SELECT last_value, is_called FROM "+qi(sq.Name)).Scan(&sq.LastValue, &sq.IsCalled); err != nil {
			return fmt.Errorf("read sequence %s: %w", sq.Name, err)
		}
	}
	return nil
}

// readFunctions reads the functions and procedures.
func readFunctions(ctx context.Context, q *sql.Conn, s *pgSchema) error {
	if err := collect(ctx, q, &s.Functions, `SELECT pg_get_functiondef(p.oid) FROM pg_proc p
		WHERE p.pronamespace = `+inSchema+` AND p.prokind IN ('f', 'p') ORDER BY p.oid`); err != nil {
		return fmt.Errorf("read functions: %w", err)
	}
	return nil
}

// readTables reads the tables, their columns and the columns' planner
// options.
func readTables(ctx context.Context, q *sql.Conn, s *pgSchema) error {
	rows, err := q.QueryContext(ctx, `SELECT c.oid, c.relname, c.relpersistence, coalesce(array_to_string(c.reloptions, ', '), ''), pg_relation_size(c.oid)
		FROM pg_class c WHERE c.relkind = 'r' AND c.relnamespace = `+inSchema+` ORDER BY c.relname`)
	if err != nil {
		return fmt.Errorf("read tables: %w", err)
	}
	type tableRow struct {
		oid         uint32
		persistence string
		options     string
	}
	var meta []tableRow
	err = scanAll(rows, func() error {
		var t pgTable
		var m tableRow
		if err := rows.Scan(&m.oid, &t.Name, &m.persistence, &m.options, &t.Bytes); err != nil {
			return err
		}
		s.Tables = append(s.Tables, t)
		meta = append(meta, m)
		return nil
	})
	if err != nil {
		return err
	}
	for i := range s.Tables {
		t := &s.Tables[i]
		cols, defs, opts, err := tableColumns(ctx, q, meta[i].oid)
		if err != nil {
			return fmt.Errorf("read the columns of %s: %w", t.Name, err)
		}
		for col, o := range opts {
			s.ColumnOptions = append(s.ColumnOptions, fmt.Sprintf("ALTER TABLE %s ALTER COLUMN %s SET (%s)", qi(t.Name), qi(col), o))
		}
		t.Columns = cols
		t.Create = createTable(t.Name, meta[i].persistence == "u", defs, meta[i].options)
	}
	return nil
}

// createTable is the CREATE TABLE statement of a table.
func createTable(name string, unlogged bool, defs []string, options string) string {
	kind := "TABLE"
	if unlogged {
		kind = "UNLOGGED TABLE"
	}
	create := fmt.Sprintf("CREATE %s %s (\n  %s\n)", kind, qi(name), strings.Join(defs, ",\n  "))
	if options != "" {
		create += " WITH (" + options + ")"
	}
	return create
}

// readViews reads the views.
func readViews(ctx context.Context, q *sql.Conn, s *pgSchema) error {
	rows, err := q.QueryContext(ctx, `SELECT c.relname, pg_get_viewdef(c.oid) FROM pg_class c WHERE c.relkind = 'v' AND c.relnamespace = `+inSchema+` ORDER BY c.oid`)
	if err != nil {
		return fmt.Errorf("read views: %w", err)
	}
	return scanAll(rows, func() error {
		var name, def string
		if err := rows.Scan(&name, &def); err != nil {
			return err
		}
		s.Views = append(s.Views, fmt.Sprintf("CREATE VIEW %s AS %s", qi(name), def))
		return nil
	})
}

// readConstraints reads the tables' keys, checks and foreign keys (NOT
// NULL is in the columns).
func readConstraints(ctx context.Context, q *sql.Conn, s *pgSchema) error {
	rows, err := q.QueryContext(ctx, `SELECT c.relname, con.conname, con.contype, pg_get_constraintdef(con.oid)
		FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid
		WHERE c.relkind = 'r' AND c.relnamespace = `+inSchema+` AND con.contype IN ('p', 'u', 'x', 'c', 'f')
		ORDER BY c.relname, con.conname`)
	if err != nil {
		return fmt.Errorf("read constraints: %w", err)
	}
	return scanAll(rows, func() error {
		var table, name, typ, def string
		if err := rows.Scan(&table, &name, &typ, &def); err != nil {
			return err
		}
		stmt := pgStmt{Table: table, SQL: fmt.Sprintf("ALTER TABLE %s ADD CONSTRAINT %s %s", qi(table), qi(name), def)}
		switch typ {
		case "f":
			s.Foreign = append(s.Foreign, stmt)
		case "c":
			s.Checks = append(s.Checks, stmt)
		default:
			s.Keys = append(s.Keys, stmt)
		}
		return nil
	})
}

// readIndexes reads the indexes that no constraint owns; the invalid ones
// are listed as skipped.
func readIndexes(ctx context.Context, q *sql.Conn, s *pgSchema) error {
	rows, err := q.QueryContext(ctx, `SELECT t.relname, ic.relname, pg_get_indexdef(i.indexrelid), i.indisvalid
		FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid
		WHERE t.relkind = 'r' AND t.relnamespace = `+inSchema+`
		  AND NOT EXISTS (SELECT 1 FROM pg_constraint con WHERE con.conindid = i.indexrelid AND con.conrelid = i.indrelid AND con.contype IN ('p', 'u', 'x'))
		ORDER BY ic.relname`)
	if err != nil {
		return fmt.Errorf("read indexes: %w", err)
	}
	return scanAll(rows, func() error {
		var table, name, def string
		var valid bool
		if err := rows.Scan(&table, &name, &def, &valid); err != nil {
			return err
		}
		if !valid {
			s.Skipped = append(s.Skipped, name)
			return nil
		}
		s.Indexes = append(s.Indexes, pgStmt{Table: table, SQL: def})
		return nil
	})
}

// readTriggers reads the triggers, and disables again those disabled.
func readTriggers(ctx context.Context, q *sql.Conn, s *pgSchema) error {
	rows, err := q.QueryContext(ctx, `SELECT c.relname, t.tgname, pg_get_triggerdef(t.oid), t.tgenabled
		FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
		WHERE NOT t.tgisinternal AND c.relnamespace = `+inSchema+` ORDER BY c.relname, t.tgname`)
	if err != nil {
		return fmt.Errorf("read triggers: %w", err)
	}
	return scanAll(rows, func() error {
		var table, name, def, enabled string
		if err := rows.Scan(&table, &name, &def, &enabled); err != nil {
			return err
		}
		s.Triggers = append(s.Triggers, def)
		if enabled == "D" {
			s.Triggers = append(s.Triggers, fmt.Sprintf("ALTER TABLE %s DISABLE TRIGGER %s", qi(table), qi(name)))
		}
		return nil
	})
}

// scanAll calls scan for each row of rows, then closes them.
func scanAll(rows *sql.Rows, scan func() error) error {
	defer rows.Close()
	for rows.Next() {
		if err := scan(); err != nil {
			return err
		}
	}
	return rows.Err()
}

// tableColumns renders a table's column definitions and lists its names.
func tableColumns(ctx context.Context, q *sql.Conn, oid uint32) (names, defs []string, options map[string]string, err error) {
	rows, err := q.QueryContext(ctx, `SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
		coalesce(pg_get_expr(d.adbin, d.adrelid), ''), coalesce(array_to_string(a.attoptions, ', '), ''),
		CASE WHEN a.attcollation <> 0 AND a.attcollation <> t.typcollation THEN quote_ident(co.collname) ELSE '' END
		FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
		LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
		LEFT JOIN pg_collation co ON co.oid = a.attcollation
		WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`, oid)
	if err != nil {
		return nil, nil, nil, err
	}
	defer rows.Close()
	options = map[string]string{}
	for rows.Next() {
		var name, typ, def, opts, coll string
		var notNull bool
		if err := rows.Scan(&name, &typ, &notNull, &def, &opts, &coll); err != nil {
			return nil, nil, nil, err
		}
		if opts != "" {
			options[name] = opts
		}
		d := qi(name) + " " + typ
		if coll != "" {
			d += " COLLATE " + coll
		}
		if notNull {
			d += " NOT NULL"
		}
		if def != "" {
			d += " DEFAULT " + def
		}
		names = append(names, name)
		defs = append(defs, d)
	}
	return names, defs, options, rows.Err()
}

// refuseUnsupported lists what the snapshot copy does not rebuild: other
// schemas, extensions, user-defined types, partitioned, inherited or
// foreign tables, materialized views, identity or generated columns,
// aggregates. A Synapse or engine database has none of them.
func refuseUnsupported(ctx context.Context, q *sql.Conn, version int) error {
	checks := []struct{ what, query string }{
		{"objects in other schemas", `SELECT string_agg(DISTINCT n.nspname, ', ') FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
			WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp_%' AND n.oid <> current_schema()::regnamespace`},
		{"extensions", `SELECT string_agg(extname, ', ') FROM pg_extension WHERE extname <> 'plpgsql'`},
		{"user-defined types", `SELECT string_agg(t.typname, ', ') FROM pg_type t WHERE t.typnamespace = current_schema()::regnamespace
			AND (t.typtype IN ('e', 'd', 'r', 'm') OR (t.typtype = 'c' AND (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c'))`},
		{"partitioned, foreign tables or materialized views", `SELECT string_agg(relname, ', ') FROM pg_class WHERE relnamespace = current_schema()::regnamespace AND relkind IN ('p', 'f', 'm')`},
		{"inherited tables", `SELECT string_agg(c.relname, ', ') FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE c.relnamespace = current_schema()::regnamespace`},
		{"identity columns", `SELECT string_agg(c.relname || '.' || a.attname, ', ') FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
			WHERE c.relnamespace = current_schema()::regnamespace AND a.attidentity <> ''`},
		{"aggregates or window functions", `SELECT string_agg(proname, ', ') FROM pg_proc WHERE pronamespace = current_schema()::regnamespace AND prokind IN ('a', 'w')`},
	}
	if version >= 120000 {
		checks = append(checks, struct{ what, query string }{"generated columns", `SELECT string_agg(c.relname || '.' || a.attname, ', ') FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
			WHERE c.relnamespace = current_schema()::regnamespace AND a.attgenerated <> ''`})
	}
	for _, c := range checks {
		var found sql.NullString
		if err := q.QueryRowContext(ctx, c.query).Scan(&found); err != nil {
			return fmt.Errorf("inspect the database (%s): %w", c.what, err)
		}
		if found.Valid && found.String != "" {
			return fmt.Errorf("%w: %s (%s)", ErrNotCopyable, c.what, found.String)
		}
	}
	return nil
}

func collect(ctx context.Context, q *sql.Conn, out *[]string, query string) error {
	rows, err := q.QueryContext(ctx, query)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return err
		}
		*out = append(*out, s)
	}
	return rows.Err()
}
