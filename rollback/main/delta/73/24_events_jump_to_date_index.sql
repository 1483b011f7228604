-- Drop the jump-to-date index and its background update.
-- dequeues: events_jump_to_date_index
DELETE FROM background_updates WHERE update_name = 'events_jump_to_date_index';
DROP INDEX IF EXISTS events_jump_to_date_idx;
