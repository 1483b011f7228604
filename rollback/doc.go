// Package rollback undoes schema deltas.
//
// For the engine's own schema (package schema/engine) every delta has a
// reverse, stored at the delta's path under this directory (rollback/main/delta/72/...), with the
// engine suffix when the two engines need different SQL, or written in Go
// and registered under the delta's path. A reverse undoes its delta and the
// effects of the background updates the delta queued (indexes built,
// constraints replaced, queue rows), and declares in its header what it
// does to data:
//
//	-- <one line saying what the reverse does>
//	-- loses: column users.locked WHERE locked (locked accounts, which become usable again)
//	-- drops: table threads (derived from event_relations)
//	-- keeps: column profiles.full_user_id (filled by the delta's back-fill)
//	-- restores-empty: table presence (dropped with its rows by the delta)
//	-- irreversible: <why the reverse cannot give back what the delta took>
//
// The planner counts declared data in the database: a rollback that would
// lose rows, or that runs an irreversible reverse, is refused unless data
// loss is allowed. Everything runs in one transaction, with the bookkeeping
// of a fresh database at the target (schema_version, schema_compat_version,
// applied_schema_deltas, written through package schema/bookkeeping's
// store), so a failed or killed rollback changes nothing.
//
// Synapse databases get the rollbacks Synapse's upgrade notes document,
// as data (synapse_recipes.yaml), and otherwise an answer to whether the
// target release accepts the database as it is.
//
// An operator's rollback is a Request: a schema version or a release (a
// release maps to its schema version through the release facts, and may
// accept the database as it is), and how to copy the database first.
// Prepare plans it read-only for each database of a configuration; the
// tool shows the plan (Format, JSON) and asks; Prepared.Run then refuses
// while the homeserver is using the database (package offline), makes the
// copy (a SQLite file next to the database, VACUUM INTO; a new PostgreSQL
// database, CREATE DATABASE ... TEMPLATE) and applies the plan.
package rollback
