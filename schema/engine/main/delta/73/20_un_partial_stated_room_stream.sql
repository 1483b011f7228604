/* Rooms that stopped being partial-stated (faster joins), as a stream. */
CREATE TABLE un_partial_stated_room_stream(
    -- Position in the stream
    stream_id BIGINT PRIMARY KEY NOT NULL,

    -- Which instance wrote this entry.
    instance_name TEXT NOT NULL,

    -- Which room has been un-partial-stated.
    room_id TEXT NOT NULL REFERENCES rooms(room_id) ON DELETE CASCADE
);

CREATE INDEX un_partial_stated_room_stream_room_id ON un_partial_stated_room_stream (room_id);
