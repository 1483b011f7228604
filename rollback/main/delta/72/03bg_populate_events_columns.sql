-- Forget the events_populate_state_key_rejections back-fill.
-- dequeues: events_populate_state_key_rejections
-- keeps: column events.state_key (copied from state_events; schema 71 writes the same value for new events)
-- keeps: column events.rejection_reason (copied from rejections; schema 71 writes the same value for new events)
DELETE FROM background_updates WHERE update_name = 'events_populate_state_key_rejections';
