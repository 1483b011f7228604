/* Indexes on the new event_stream_ordering columns of the membership tables,
 * for purging and for the sliding sync of memberships. */
INSERT INTO background_updates (ordering, update_name, progress_json) VALUES
    (7714, 'current_state_events_stream_ordering_idx', '{}'),
    (7714, 'local_current_membership_stream_ordering_idx', '{}'),
    (7714, 'room_memberships_stream_ordering_idx', '{}');
