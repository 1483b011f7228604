/* Where the timeline of a room has gaps (events we know of but do not have),
 * so that clients can be told. */
CREATE TABLE timeline_gaps (
    room_id TEXT NOT NULL,
    instance_name TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL
);

CREATE INDEX timeline_gaps_room_id ON timeline_gaps(room_id, stream_ordering);
