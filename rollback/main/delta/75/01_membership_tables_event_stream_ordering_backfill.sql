-- Forget the event_stream_ordering back-fills of the membership tables.
-- dequeues: room_memberships_stream_ordering_backfill, current_state_events_stream_ordering_backfill, local_current_membership_stream_ordering_backfill
-- keeps: column room_memberships.event_stream_ordering (copied from events)
-- keeps: column current_state_events.event_stream_ordering (copied from events)
-- keeps: column local_current_membership.event_stream_ordering (copied from events)
DELETE FROM background_updates WHERE update_name IN ('room_memberships_stream_ordering_backfill',
    'current_state_events_stream_ordering_backfill', 'local_current_membership_stream_ordering_backfill');
