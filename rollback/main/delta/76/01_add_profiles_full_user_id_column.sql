-- Drop profiles.full_user_id, its unique index and their background update.
-- dequeues: profiles_full_user_id_key_idx
-- drops: column profiles.full_user_id (the full user ID, derived from user_id and the server name)
DELETE FROM background_updates WHERE update_name = 'profiles_full_user_id_key_idx';
DROP INDEX IF EXISTS profiles_full_user_id_key;
ALTER TABLE profiles DROP COLUMN full_user_id;
