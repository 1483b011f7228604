/* As for profiles: the full MXID next to the localpart in user_filters. */
ALTER TABLE user_filters ADD COLUMN full_user_id TEXT;

INSERT INTO background_updates (ordering, update_name, progress_json) VALUES
    (7602, 'full_users_filters_unique_idx', '{}');
