/* events.state_key and events.rejection_reason (added at 66) are filled for
 * new events; back-fill the old ones from state_events and rejections. */
INSERT INTO background_updates (ordering, update_name, progress_json) VALUES
    (7203, 'events_populate_state_key_rejections', '{}');
