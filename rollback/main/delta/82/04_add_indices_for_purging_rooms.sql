-- Drop the room_account_data room_id index and its background update.
-- dequeues: room_account_data_index_room_id
DELETE FROM background_updates WHERE update_name = 'room_account_data_index_room_id';
DROP INDEX IF EXISTS room_account_data_room_id;
