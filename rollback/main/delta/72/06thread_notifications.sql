-- Drop event_push_actions.thread_id.
-- loses: column event_push_actions.thread_id WHERE thread_id <> 'main' (the thread of notifications in threads)
ALTER TABLE event_push_actions DROP COLUMN thread_id;
