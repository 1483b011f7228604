// Package repair removes the duplicated rows of state_group_edges that block
// the state_group_edges_unique_idx background update, the one repair
// Synapse's upgrade notes prescribe (v1.60.0).
//
// # The model
//
// The unique index on (state_group, prev_state_group) can never be built
// while a pair occurs more than once. The repair keeps, of each pair, the
// physically first row (lowest rowid on SQLite, ctid on PostgreSQL) and
// deletes the others, with the statement the upgrade notes give. It works
// on engine and Synapse databases alike: the rows it removes carry no
// information the kept row lacks.
//
// # Invariants
//
// The deletion runs in one transaction, which also checks before it commits
// that every distinct pair is still present exactly once: a repair either
// removes exactly the extra rows or changes nothing. A dry run counts and
// writes nothing. The repair does not touch the bookkeeping: once it has
// run, the background update succeeds on its next run.
package repair
