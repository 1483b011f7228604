-- Drop user_filters.full_user_id, its unique index and their background update.
-- dequeues: full_users_filters_unique_idx
-- drops: column user_filters.full_user_id (the full user ID, derived from user_id and the server name)
DELETE FROM background_updates WHERE update_name = 'full_users_filters_unique_idx';
DROP INDEX IF EXISTS full_users_unique_idx;
ALTER TABLE user_filters DROP COLUMN full_user_id;
