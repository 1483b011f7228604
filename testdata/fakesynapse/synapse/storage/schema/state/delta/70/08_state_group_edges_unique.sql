/* As Synapse's state/delta/70/08_state_group_edges_unique.sql: queue the
 * unique index on state_group_edges. */
INSERT INTO background_updates (ordering, update_name, progress_json) VALUES
  (7008, 'state_group_edges_unique_idx', '{}');
