// Package engine is the hsops homeserver engine's database schema: the Set
// that package schema plans and applies, made of the SQL files under this
// directory (embedded), the deltas written in Go, and the handlers of the
// background updates the deltas queue.
//
// # The model
//
// The schema follows Synapse's layout and numbering (see package schema):
// logical databases main and state, common for the bookkeeping, full
// snapshots at 68 (the oldest version the engine upgrades from) and 83
// (where new databases start), and the deltas of 69 to 83, which reproduce
// for the engine's tables the real changes Synapse made between those
// versions. Versions carry Synapse's compat versions (the compat version of
// the last release with that schema version), so the release fact tables
// apply to engine databases as they do to Synapse's.
//
// Three deltas are Go (what SQL cannot say): rebuilding SQLite's full-text
// search with the porter tokenizer (73), and finishing the full_user_id
// back-fills at upgrade time (78). Every background update a delta queues
// has its handler here; the on-demand job populate_stats_process_rooms
// (Synapse's start_job) too.
//
// # Invariants
//
// A database created at any version from 68 to 82 and upgraded to 83, its
// background updates run, has exactly the catalog of one created from the
// 83 snapshot, on both engines (a test). Every delta has a reverse in
// package rollback. Handlers write their progress and the queue only
// through package schema's runner, and the Go deltas only through the
// bookkeeping store.
package engine
