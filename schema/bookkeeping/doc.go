// Package bookkeeping is the one reader and writer of a homeserver
// database's schema bookkeeping: the rows of schema_version,
// schema_compat_version, applied_schema_deltas, background_updates and the
// engine's mark, hsops_engine. It plays the part goose's database.Store
// plays for goose: the machinery that plans and applies (package schema),
// the rollback, the porter and the engine's Go deltas all change these rows
// through a Store, and no other code holds SQL that writes them (a test
// checks the whole module for it).
//
// # The tables
//
// The tables are Synapse's, with Synapse's meaning, so that a database
// written by these tools reads like one Synapse wrote:
//
//	schema_version         one row: version, and upgraded (false while the
//	                       database is as its version's snapshot made it)
//	schema_compat_version  one row: the oldest schema version whose code can
//	                       use the database
//	applied_schema_deltas  a row per applied delta, file "<V>/<file name>"
//	background_updates     the queue: update_name (unique), progress_json,
//	                       depends_on, ordering
//	hsops_engine           one row in databases the engine created: the
//	                       schema's owner, the version it was created at, when
//
// The tables themselves are created by the schema's SQL (Synapse's
// common/schema_version.sql and the snapshots), not here.
//
// # Invariants
//
// The one-row tables are replaced, never updated in place: SetVersion and
// SetCompat delete the row and insert the new one, so a database that lost
// its row (or never had it) ends with exactly one. A Store never opens a
// transaction: every method runs on the Querier it is given (a transaction,
// a dedicated connection or the pool), so that the caller decides what
// commits together: a version's deltas with their bookkeeping, a batch of a
// background update with its progress, a whole rollback with the
// bookkeeping of its target. Enqueue leaves an update already queued as it
// is (its progress is kept), which makes queueing idempotent.
package bookkeeping
