/* Purging a room deletes its account data by room_id: index it. */
INSERT INTO background_updates (ordering, update_name, progress_json) VALUES
    (8204, 'room_account_data_index_room_id', '{}');
