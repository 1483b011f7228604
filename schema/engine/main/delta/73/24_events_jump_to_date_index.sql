/* Index for /timestamp_to_event (jump to date) that skips outliers. */
INSERT INTO background_updates (ordering, update_name, progress_json) VALUES
    (7324, 'events_jump_to_date_index', '{}');
