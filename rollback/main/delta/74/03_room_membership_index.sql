-- Drop the (user_id, room_id) membership index and its background update.
-- dequeues: room_membership_user_room_index
DELETE FROM background_updates WHERE update_name = 'room_membership_user_room_index';
DROP INDEX IF EXISTS room_membership_user_room_idx;
