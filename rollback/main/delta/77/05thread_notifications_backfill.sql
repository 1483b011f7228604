-- Forget the event_push_actions.thread_id back-fill.
-- dequeues: event_push_backfill_thread_id
-- keeps: column event_push_actions.thread_id ('main' for notifications that predate threads, which schema 76 reads as no thread)
DELETE FROM background_updates WHERE update_name = 'event_push_backfill_thread_id';
