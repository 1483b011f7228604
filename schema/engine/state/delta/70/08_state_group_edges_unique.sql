/* Duplicate (state_group, prev_state_group) rows, typically from restoring a
 * dump twice, make state resolution slow (matrix-org/synapse#11779). Replace
 * the index on state_group with a unique one on the pair, in the background:
 * on a large database the build takes a while, and it fails while duplicates
 * remain (see `update_database repair state-group-edges`). */

INSERT INTO background_updates (ordering, update_name, progress_json) VALUES
    (7008, 'state_group_edges_unique_idx', '{}');
