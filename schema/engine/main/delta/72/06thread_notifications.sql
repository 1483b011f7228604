/* Notifications per thread (MSC3773). */
ALTER TABLE event_push_actions ADD COLUMN thread_id TEXT;
