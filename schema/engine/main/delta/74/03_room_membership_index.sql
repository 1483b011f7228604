/* Index to look up a user's membership in a room. */
INSERT INTO background_updates (ordering, update_name, progress_json) VALUES
    (7403, 'room_membership_user_room_index', '{}');
