/* Notifications that predate threads belong to the main timeline. */
INSERT INTO background_updates (ordering, update_name, progress_json) VALUES
    (7705, 'event_push_backfill_thread_id', '{}');
