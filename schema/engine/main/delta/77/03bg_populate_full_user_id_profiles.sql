/* Back-fill profiles.full_user_id, batch by batch. */
INSERT INTO background_updates (ordering, update_name, progress_json) VALUES
    (7703, 'populate_full_user_id_profiles', '{}');
