/* Back-fill event_stream_ordering (added at 74) in the membership tables,
 * batch by batch. */
INSERT INTO background_updates (ordering, update_name, progress_json) VALUES
    (7501, 'room_memberships_stream_ordering_backfill', '{}'),
    (7501, 'current_state_events_stream_ordering_backfill', '{}'),
    (7501, 'local_current_membership_stream_ordering_backfill', '{}');
