/* profiles.user_id holds a localpart; full_user_id holds the whole MXID. New
 * rows get both; old rows are back-filled (77/03) and the column becomes
 * mandatory (77/01, 78/01). */
ALTER TABLE profiles ADD COLUMN full_user_id TEXT;

INSERT INTO background_updates (ordering, update_name, progress_json) VALUES
    (7601, 'profiles_full_user_id_key_idx', '{}');
