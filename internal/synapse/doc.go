// Package synapse drives a real Synapse's own upgrade tool from Go.
//
// A Synapse release is reached through the Python interpreter it is
// installed in (--python, as for synctl): Probe asks that Python which
// release it has and which schema and compat versions the release brings its
// databases to. Run starts
//
//	PY -m synapse._scripts.update_synapse_database --database-config CFG [--run-background-updates]
//
// (spec section 3.1), streams and keeps its output, and watches the
// databases it works on: applied_schema_deltas before and after (which deltas
// ran), background_updates while it runs (which update is running, its
// progress, when it finished). It returns what happened step by step: each
// delta with its time as the log shows it, the blocking schema phase apart
// from the background phase, each background update with its duration,
// batches and items.
//
// # Failures
//
// A failing delta ends the script with a traceback and exit status 1: the
// delta is the one whose "Applying schema" line has no applied_schema_deltas
// row afterwards. A failing background update is retried; after five
// back-to-back failures Synapse logs "RuntimeError: 5 back-to-back background
// update failures; aborting." and, as a known quirk, keeps running with
// nothing to do instead of exiting. Run recognises that line, gives the
// process a moment to exit by itself (a fixed Synapse would), checks that
// background_updates no longer moves, and stops the process (SIGTERM to its
// process group, then SIGKILL). Either way the result names the failing delta
// or update, the error behind it (the exception that preceded the abort,
// e.g. "sqlite3.IntegrityError: UNIQUE constraint failed: ...") and the fix
// where one is known, e.g. duplicated state_group_edges rows and
// `update_database repair state-group-edges`.
//
// The process gets its own process group and dies with this one (Linux
// parent-death signal), so a killed caller leaves no Synapse behind.
package synapse
