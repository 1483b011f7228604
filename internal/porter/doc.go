// Package porter copies a homeserver's SQLite database into PostgreSQL, in
// repeatable snapshots, compatibly with Synapse's synapse_port_db.
//
// # Model
//
// The port's progress lives in the target, in Synapse's table
// port_from_sqlite3(table_name, forward_rowid, backward_rowid), so that a
// port begun by Synapse's porter can be finished by this one and the other
// way round. Append-only tables (events, their JSON, edges, state groups,
// users, rooms ...) are copied by SQLite rowid in batches, upwards from
// forward_rowid and downwards from backward_rowid (backfilled events have
// negative rowids); each batch is committed in the same PostgreSQL
// transaction as its bookkeeping row, so a killed port resumes exactly where
// it stopped. Every other table is emptied and copied again on each run, in
// one transaction and one COPY stream. Porting a newer snapshot of the same
// database therefore moves only the new rows of the append-only tables.
//
// # Safety
//
// Everything is checked before the first write: the source is a homeserver
// database with no pending background updates, auto_vacuum off (rowids must
// not move between runs) and no other process holding it open; the target is
// reachable, new enough, UTF8 with C collation and ctype (unless
// allow_unsafe_locale), and either empty, or a previous port of this same
// source (an identity of the source is recorded in hsops_port), or a schema
// the homeserver prepared with no rows in its data tables. The last row each
// append-only table copied is fingerprinted, so a source whose rowids moved
// (a VACUUM between runs) is refused instead of silently corrupting the port.
//
// Values are converted by the target column's type as PostgreSQL reports it
// (booleans, bytea, integers, text), never by a hand-kept list. Text cannot
// hold U+0000 in PostgreSQL: such characters (and invalid UTF-8) become
// U+FFFD and are counted, and the row is kept. Sequences are set before the
// copy and again after, from the source's maxima and stream positions, and
// never moved backwards.
//
// Two modes: an engine database is ported into a schema the porter creates
// (at exactly the source's schema version) with the schema engine; a Synapse
// database is ported into a schema Synapse prepared beforehand.
//
// # Speed: indexes after the copy
//
// A table whose copy starts on an empty target table (every re-copied
// table, and an append-only one on a first port) is loaded without its
// secondary indexes, primary key, unique indexes and foreign keys, which
// are built again once it is copied. What is dropped is read from the
// catalog (pg_get_indexdef, pg_get_constraintdef), so a schema Synapse
// prepared is served as well as the engine's; anything a drop and a
// re-creation could not restore exactly (a comment, a tablespace, CLUSTER,
// replica identity, an invalid index, an exclusion constraint) stays. The
// drop and its record in hsops_port_deferred (table, name, kind, the
// catalog's definition, whether a key was validated) happen in one
// transaction; putting an object back and deleting its record happen in
// another (a primary key or unique constraint: its index built, then
// attached; a foreign key: added NOT VALID, then validated, each step
// recorded), so a port killed at any moment resumes with the same command
// and ends with exactly the catalog it began with. Until then the target is
// a port in progress, which portstate.Check refuses for the homeserver and
// update_database.
//
// Tables are copied in foreign-key order (the membership tables' triggers
// look events up as rows land, so a table starts once those it references
// are copied and indexed), and each table's indexes are built as soon as it
// is copied, beside other tables' copies: up to Jobs sessions at once, with
// more maintenance_work_mem and parallel maintenance workers. Re-copied
// tables are written with COPY FREEZE (emptied in the copy's transaction);
// the port's sessions run with synchronous_commit off, a batch and its
// bookkeeping still committing together. The source's checks (a quick_check
// of every table, the counting of every row) run at once and while the
// target is prepared, in a transaction committed only once they pass.
//
// # A final port: cost proportional to what moved
//
// A switch's final port (port_db --switch-config, the homeserver stopped)
// sets four options, each argued in final.go: no whole-file quick_check
// when the caller checked the pages minutes before (PagesChecked); the
// re-copied tables equal on both sides kept rather than copied again
// (KeepUnchanged); no count of what earlier runs ported (EstimateAlready);
// and a verification of what the run copied, found in the target through
// an index and the inserting transaction (VerifyMoved), instead of both
// databases read whole. A plain port keeps the whole-file check and, with
// --verify, the whole comparison.
package porter
