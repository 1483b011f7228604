/* Back-fill user_filters.full_user_id, batch by batch. */
INSERT INTO background_updates (ordering, update_name, progress_json) VALUES
    (7704, 'populate_full_user_id_user_filters', '{}');
