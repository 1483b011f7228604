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
package porter
