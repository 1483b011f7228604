-- Put back the index on state_group_edges.state_group and drop the unique (state_group, prev_state_group) index that replaced it.
-- dequeues: state_group_edges_unique_idx
DELETE FROM background_updates WHERE update_name = 'state_group_edges_unique_idx';
CREATE INDEX IF NOT EXISTS state_group_edges_idx ON state_group_edges (state_group);
DROP INDEX IF EXISTS state_group_edges_unique_idx;
