package porter

import (
	"context"
	"database/sql"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"hsops/internal/db"
	"hsops/internal/fault"
)

// deferredSQL is the port's record of what it dropped: one row per index or
// constraint, written in the transaction that drops it and deleted in the
// transaction that puts it back. Definitions are the catalog's own
// (pg_get_indexdef, pg_get_constraintdef) as they were before the drop.
const deferredSQL = `
CREATE TABLE IF NOT EXISTS hsops_port_deferred (
    table_name TEXT NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    definition TEXT NOT NULL,
    is_deferrable BOOLEAN NOT NULL,
    initially_deferred BOOLEAN NOT NULL,
    validated BOOLEAN NOT NULL,
    referenced_table TEXT,
    state TEXT NOT NULL,
    dropped_ts BIGINT NOT NULL,
    UNIQUE (table_name, name)
);`

// The kinds of deferred objects.
const (
	kindIndex      = "index"
	kindPrimaryKey = "primary key"
	kindUnique     = "unique"
	kindForeignKey = "foreign key"
)

// The states of a deferred object: dropped; (a primary key or unique
// constraint) its index built, the constraint still to be attached; (a
// foreign key) added back NOT VALID, still to be validated.
const (
	stateDropped = "dropped"
	stateBuilt   = "built"
	stateAdded   = "added"
)

// deferredObject is an index or constraint dropped for the copy.
type deferredObject struct {
	Table string
	Name  string
	Kind  string
	// Definition is pg_get_indexdef for indexes, primary keys and unique
	// constraints, pg_get_constraintdef for foreign keys.
	Definition        string
	Deferrable        bool
	InitiallyDeferred bool
	// Validated: a foreign key that was validated (otherwise it is put
	// back NOT VALID, as it was).
	Validated bool
	State     string
	// RefTable is the table a foreign key references.
	RefTable string
}

func (o deferredObject) isIndex() bool { return o.Kind != kindForeignKey }

func (o deferredObject) String() string {
	if o.Kind == kindIndex {
		return "index " + o.Name
	}
	return o.Kind + " " + o.Name
}

// catalogObjects are a schema's indexes and foreign keys, as the catalog
// describes them, with what decides whether they can be deferred.
type catalogObjects struct {
	indexes []catalogIndex
	fkeys   []catalogFK
}

type catalogIndex struct {
	deferredObject
	// Keep: something the drop and re-creation would not restore exactly
	// (a comment, a tablespace, CLUSTER, replica identity, a statistics
	// target, an invalid or exclusion index, a constraint other than
	// PRIMARY KEY or UNIQUE).
	Keep   bool
	Unique bool
}

// has reports whether the schema has an index or foreign key of a table.
func (c *catalogObjects) has(table, name string) bool {
	for _, ix := range c.indexes {
		if ix.Table == table && ix.Name == name {
			return true
		}
	}
	for _, k := range c.fkeys {
		if k.Table == table && k.Name == name {
			return true
		}
	}
	return false
}

type catalogFK struct {
	deferredObject
	// RefIndex is the referenced table's unique index the key depends on.
	RefIndex string
	Keep     bool
}

// readCatalogObjects reads the indexes and foreign keys of the current
// schema.
func readCatalogObjects(ctx context.Context, q db.Querier) (*catalogObjects, error) {
	out := &catalogObjects{}
	rows, err := q.QueryContext(ctx, `
		SELECT t.relname, i.relname, pg_get_indexdef(i.oid), x.indisunique,
		       coalesce(con.contype::text, ''), coalesce(con.condeferrable, false), coalesce(con.condeferred, false),
		       NOT x.indisvalid OR NOT x.indisready OR x.indisclustered OR x.indisreplident OR i.reltablespace <> 0
		         OR obj_description(i.oid, 'pg_class') IS NOT NULL
		         OR EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = i.oid AND a.attstattarget > 0)
		         OR (con.oid IS NOT NULL AND (con.contype NOT IN ('p', 'u') OR obj_description(con.oid, 'pg_constraint') IS NOT NULL))
		FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid
		LEFT JOIN pg_constraint con ON con.conindid = i.oid AND con.conrelid = t.oid AND con.contype IN ('p', 'u', 'x')
		WHERE t.relnamespace = current_schema()::regnamespace AND t.relkind = 'r'
		ORDER BY t.relname, i.relname`)
	if err != nil {
		return nil, fmt.Errorf("read the target's indexes: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var ix catalogIndex
		var contype string
		if err := rows.Scan(&ix.Table, &ix.Name, &ix.Definition, &ix.Unique, &contype, &ix.Deferrable, &ix.InitiallyDeferred, &ix.Keep); err != nil {
			return nil, err
		}
		switch contype {
		case "p":
			ix.Kind = kindPrimaryKey
		case "u":
			ix.Kind = kindUnique
		default:
			ix.Kind = kindIndex
		}
		ix.Validated = true
		ix.State = stateDropped
		out.indexes = append(out.indexes, ix)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	rows.Close()
	fk, err := q.QueryContext(ctx, `
		SELECT c.relname, con.conname, pg_get_constraintdef(con.oid), con.convalidated, r.relname, coalesce(ri.relname, ''),
		       obj_description(con.oid, 'pg_constraint') IS NOT NULL
		FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid JOIN pg_class r ON r.oid = con.confrelid
		LEFT JOIN pg_class ri ON ri.oid = con.conindid
		WHERE con.contype = 'f' AND c.relnamespace = current_schema()::regnamespace
		ORDER BY c.relname, con.conname`)
	if err != nil {
		return nil, fmt.Errorf("read the target's foreign keys: %w", err)
	}
	defer fk.Close()
	for fk.Next() {
		var k catalogFK
		if err := fk.Scan(&k.Table, &k.Name, &k.Definition, &k.Validated, &k.RefTable, &k.RefIndex, &k.Keep); err != nil {
			return nil, err
		}
		k.Kind = kindForeignKey
		k.State = stateDropped
		// A key added NOT VALID shows it in its definition: kept as the
		// catalog had it, and put back the same way.
		k.Definition = strings.TrimSuffix(k.Definition, " NOT VALID")
		out.fkeys = append(out.fkeys, k)
	}
	return out, fk.Err()
}

// chooseDeferred picks what to drop. empty holds the tables that are empty
// when the copy begins (re-copied ones, and append-only ones that hold
// nothing yet); bulk those of them that receive enough rows for the drop to
// pay. Dropped: the indexes of the bulk tables, their primary keys and
// unique constraints included (measured: a port of 1,000,000 messages whose
// unique indexes are kept through the copy costs PostgreSQL two thirds more
// work), their foreign keys, and the foreign keys of the other empty tables
// that depend on a unique index dropped (cheap to validate again: they hold
// few rows). A unique index
// that a foreign key of a table not empty depends on is kept (dropping it
// would mean validating that key again over rows already there), and so is
// anything the catalog could not restore exactly.
func chooseDeferred(cat *catalogObjects, empty, bulk map[string]bool) []deferredObject {
	neededByOthers := map[string]bool{}
	for _, k := range cat.fkeys {
		if !empty[k.Table] && k.RefIndex != "" {
			neededByOthers[k.RefIndex] = true
		}
	}
	var out []deferredObject
	dropped := map[string]bool{}
	for _, ix := range cat.indexes {
		if !bulk[ix.Table] || ix.Keep {
			continue
		}
		if ix.Unique && neededByOthers[ix.Name] {
			continue
		}
		out = append(out, ix.deferredObject)
		dropped[ix.Name] = true
	}
	for _, k := range cat.fkeys {
		if !k.Keep && (bulk[k.Table] || empty[k.Table] && dropped[k.RefIndex]) {
			out = append(out, k.deferredObject)
		}
	}
	return out
}

// readDeferred reads the port's record of what it dropped.
func readDeferred(ctx context.Context, q db.Querier) ([]deferredObject, error) {
	rows, err := q.QueryContext(ctx, `SELECT table_name, name, kind, definition, is_deferrable, initially_deferred, validated,
		coalesce(referenced_table, ''), state FROM hsops_port_deferred ORDER BY table_name, name`)
	if err != nil {
		return nil, fmt.Errorf("read the indexes and constraints dropped for the copy: %w", err)
	}
	defer rows.Close()
	var out []deferredObject
	for rows.Next() {
		var o deferredObject
		if err := rows.Scan(&o.Table, &o.Name, &o.Kind, &o.Definition, &o.Deferrable, &o.InitiallyDeferred, &o.Validated, &o.RefTable, &o.State); err != nil {
			return nil, err
		}
		out = append(out, o)
	}
	return out, rows.Err()
}

// dropDeferred drops objects and records them (if record), in the caller's
// transaction: foreign keys first (they depend on the unique indexes they
// reference), then the indexes.
func dropDeferred(ctx context.Context, tx *sql.Tx, objs []deferredObject, record bool) error {
	sorted := append([]deferredObject(nil), objs...)
	sort.SliceStable(sorted, func(i, j int) bool { return !sorted[i].isIndex() && sorted[j].isIndex() })
	now := time.Now().UnixMilli()
	for _, o := range sorted {
		if record {
			// A row already there is the original record (a key added back
			// NOT VALID by a killed run, dropped again): it keeps its
			// definition.
			if _, err := tx.ExecContext(ctx, `INSERT INTO hsops_port_deferred
				(table_name, name, kind, definition, is_deferrable, initially_deferred, validated, referenced_table, state, dropped_ts)
				VALUES ($1, $2, $3, $4, $5, $6, $7, NULLIF($8, ''), 'dropped', $9)
				ON CONFLICT (table_name, name) DO UPDATE SET state = 'dropped'`,
				o.Table, o.Name, o.Kind, o.Definition, o.Deferrable, o.InitiallyDeferred, o.Validated, o.RefTable, now); err != nil {
				return fmt.Errorf("record %s of %s: %w", o, o.Table, err)
			}
		}
		var stmt string
		switch o.Kind {
		case kindIndex:
			stmt = "DROP INDEX " + db.QuoteIdent(o.Name)
		default:
			stmt = "ALTER TABLE " + db.QuoteIdent(o.Table) + " DROP CONSTRAINT " + db.QuoteIdent(o.Name)
		}
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("drop %s of %s for the copy: %w", o, o.Table, err)
		}
	}
	return nil
}

// rebuildSession sets the memory and parallel workers PostgreSQL gives an
// index build, for this session only: maintenance_work_mem raised to
// rebuildMemory (never lowered: the port runs at most --jobs builds at
// once), and as many parallel maintenance workers as the load has idle
// sessions (PostgreSQL still bounds them by max_worker_processes and the
// table's size).
func rebuildSession(ctx context.Context, pc *pgx.Conn, workers int) error {
	_, err := pc.Exec(ctx, `SELECT set_config('maintenance_work_mem', (greatest(pg_size_bytes(current_setting('maintenance_work_mem')), pg_size_bytes($1)) / 1024)::text || 'kB', false),
		set_config('max_parallel_maintenance_workers', $2::int::text, false)`,
		rebuildMemory, max(workers, 0))
	return err
}

// rebuildMemory is the sort memory of an index build.
const rebuildMemory = "256MB"

// rebuild puts one object back and deletes its record in the same
// transaction (a foreign key: added NOT VALID in one transaction, then
// validated in another, as it was), so a kill at any moment leaves either
// the object or its record.
func rebuild(ctx context.Context, pc *pgx.Conn, o deferredObject, record bool) error {
	r := rebuilder{ctx: ctx, pc: pc, o: o, record: record}
	var err error
	switch o.Kind {
	case kindIndex:
		err = r.step(o.Definition, "")
	case kindPrimaryKey, kindUnique:
		err = r.constraintIndex()
	case kindForeignKey:
		err = r.foreignKey()
	default:
		return fmt.Errorf("unknown kind %q of %s in hsops_port_deferred", o.Kind, o.Name)
	}
	if err != nil {
		return &RebuildError{Table: o.Table, Object: o.String(), Err: err}
	}
	return nil
}

// rebuilder puts one deferred object back, step by step.
type rebuilder struct {
	ctx    context.Context
	pc     *pgx.Conn
	o      deferredObject
	record bool
}

// stateDone is the state after the last step: the record is deleted.
const stateDone = ""

// step runs one statement and moves the object's record to state (deletes
// it for stateDone) in one transaction. Builds and keys on related tables
// take locks in different orders: a deadlock PostgreSQL breaks is tried
// again.
func (r rebuilder) step(stmt, state string) error {
	return db.RetryDeadlocks(r.ctx, func() error { return r.stepOnce(stmt, state) })
}

func (r rebuilder) stepOnce(stmt, state string) error {
	ctx := r.ctx
	tx, err := r.pc.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, stmt); err != nil {
		return err
	}
	if r.record {
		if state == stateDone {
			_, err = tx.Exec(ctx, "DELETE FROM hsops_port_deferred WHERE table_name = $1 AND name = $2", r.o.Table, r.o.Name)
		} else {
			_, err = tx.Exec(ctx, "UPDATE hsops_port_deferred SET state = $3 WHERE table_name = $1 AND name = $2", r.o.Table, r.o.Name, state)
		}
		if err != nil {
			return err
		}
	}
	return tx.Commit(ctx)
}

// constraintIndex puts a primary key or unique constraint back: its index
// is built first, beside the table's other index builds (CREATE INDEX
// shares the table); attaching it as the constraint locks the table,
// briefly, in a transaction of its own: in one transaction, two such
// builds on one table would deadlock.
func (r rebuilder) constraintIndex() error {
	o := r.o
	clause := "PRIMARY KEY"
	if o.Kind == kindUnique {
		clause = "UNIQUE"
	}
	clause += " USING INDEX " + db.QuoteIdent(o.Name)
	if o.Deferrable {
		clause += " DEFERRABLE"
		if o.InitiallyDeferred {
			clause += " INITIALLY DEFERRED"
		}
	}
	if o.State != stateBuilt {
		if err := r.step(o.Definition, stateBuilt); err != nil {
			return err
		}
	}
	return r.step("ALTER TABLE "+db.QuoteIdent(o.Table)+" ADD CONSTRAINT "+db.QuoteIdent(o.Name)+" "+clause, stateDone)
}

// foreignKey puts a foreign key back NOT VALID, then validates it if it
// was, each in a transaction of its own (the validation takes only a
// share lock on the table).
func (r rebuilder) foreignKey() error {
	o := r.o
	table := db.QuoteIdent(o.Table)
	add := "ALTER TABLE " + table + " ADD CONSTRAINT " + db.QuoteIdent(o.Name) + " " + o.Definition + " NOT VALID"
	if !o.Validated {
		return r.step(add, stateDone)
	}
	if o.State != stateAdded {
		if err := r.step(add, stateAdded); err != nil {
			return err
		}
	}
	return r.step("ALTER TABLE "+table+" VALIDATE CONSTRAINT "+db.QuoteIdent(o.Name), stateDone)
}

// RebuildError is an index or constraint that could not be put back after
// the copy (for a unique index: duplicated rows in the source). The port
// stays in progress: its record is kept, and the next run tries again.
type RebuildError struct {
	Table, Object string
	Err           error
}

func (e *RebuildError) Error() string {
	return fmt.Sprintf("rebuild %s of %s after the copy: %v", e.Object, e.Table, e.Err)
}

func (e *RebuildError) Unwrap() error { return e.Err }

// Class is a failed port's.
func (e *RebuildError) Class() fault.Class { return fault.PortFailed }

// Hint says how to go on.
func (e *RebuildError) Hint() string {
	return "the port is in progress: the homeserver and update_database refuse the target until it is finished. Fix the cause " +
		"(for a unique index: the duplicated rows in the SQLite database, then port into an empty database), then run the same command again"
}
