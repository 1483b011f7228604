-- Drop the event_stream_ordering indexes of the membership tables and their background updates.
-- dequeues: current_state_events_stream_ordering_idx, local_current_membership_stream_ordering_idx, room_memberships_stream_ordering_idx
DELETE FROM background_updates WHERE update_name IN ('current_state_events_stream_ordering_idx',
    'local_current_membership_stream_ordering_idx', 'room_memberships_stream_ordering_idx');
DROP INDEX IF EXISTS current_state_events_stream_ordering_idx;
DROP INDEX IF EXISTS local_current_membership_stream_ordering_idx;
DROP INDEX IF EXISTS room_memberships_stream_ordering_idx;
