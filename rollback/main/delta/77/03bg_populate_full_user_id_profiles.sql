-- Forget the profiles.full_user_id back-fill.
-- dequeues: populate_full_user_id_profiles
-- keeps: column profiles.full_user_id (derived from user_id and the server name; schema 76 writes it for new rows)
DELETE FROM background_updates WHERE update_name = 'populate_full_user_id_profiles';
