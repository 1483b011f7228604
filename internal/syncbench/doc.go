// Package syncbench measures /sync against the engine running as its own
// process (the homeserver binary, built by the benchmarks), on SQLite and
// PostgreSQL: how soon a long-polling client receives a message compared
// with the send itself, an initial sync of a user in 10 rooms of 1,000
// events, and the engine's memory with 1,000 long-polls open. The numbers
// are in README (Performance).
package syncbench
