// Package schema is the generic machinery that creates and upgrades a
// homeserver database with a schema Set: plan, apply, the schema lock, the
// preflight and the background-update runner. It follows Synapse's
// conventions exactly so that the bookkeeping of an engine database reads
// like Synapse's. The engine's own schema (its SQL, Go deltas and update
// handlers) is package schema/engine; the bookkeeping rows are read and
// written only through package schema/bookkeeping's Store.
//
// # The model
//
// A schema Set is a tree of SQL files (an fs.FS: the engine's are embedded
// with go:embed) plus deltas written in Go. Tables are grouped in logical databases: "main" and "state"
// hold data, "common" holds the bookkeeping every physical database gets. A
// physical database hosts one or both of main and state (config data_stores).
//
//	common/schema_version.sql              bookkeeping tables, created if missing
//	<db>/full_schemas/<N>/full.sql[.<eng>] the whole schema at version N
//	<db>/delta/<V>/<NN><name>.sql[.<eng>]  one change made at version V
//
// <eng> is "sqlite" or "postgres"; a file with the other engine's suffix is
// skipped and not recorded. Go deltas are registered in code under a path of
// the same shape ending in ".go".
//
// # Versions and ordering
//
// A new database takes the newest snapshot at or below the target version,
// then every delta of the versions after it. An existing database at version
// V takes the deltas of V+1 up to the target (and the not yet applied deltas
// of V itself when schema_version.upgraded is true). Within a version, deltas
// run in file-name order across the logical databases, which is why names
// carry a numeric prefix and must be unique within a version. Each applied
// delta is recorded in applied_schema_deltas as "<V>/<file name>".
//
// # Compatibility
//
// schema_compat_version holds the oldest schema version whose code can use
// the database. Each version step raises it to that version's compat version
// before running the version's deltas, in the same transaction, and never
// lowers it. Code refuses a database whose compat version is newer than its
// own schema version; a database at a higher version with a compatible compat
// version is a valid rollback and is left untouched.
//
// # Safety
//
// Everything (every file, every Go delta, the target) is read and validated
// before the first write, after the Preflight: the server's version, a
// PostgreSQL database's encoding and locale, and the stricter locale a new
// database needs. Apply runs it; the tools that plan first run it too. Each version is applied in one transaction together
// with its bookkeeping, so a failure leaves the database at the previous
// version exactly. A schema lock (a PostgreSQL advisory lock, or a lock file
// next to a SQLite database) keeps two processes from upgrading at once and
// names the holder to the one that has to wait.
//
// The engine marks the databases it creates (table hsops_engine) so tools can
// tell them from Synapse's, whose schema they must not touch.
//
// # Background updates
//
// Deltas enqueue long data migrations as rows of background_updates; the
// Runner executes them batch by batch, each batch in one transaction with its
// progress, so a killed run resumes where it stopped. A Registry maps update
// names to Handlers: a batch function, an index build (CONCURRENTLY on
// PostgreSQL) or a KeyBackfill that walks a table in key order. A handler
// may explain its failures (the engine's unique-index update names the
// repair that unblocks it). Batches are sized by Tuning, the homeserver
// config's background_updates section passed as plain values: this package
// reads no configuration.
package schema
