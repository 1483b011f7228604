/* The latest event of each thread, for the threads API. Existing threads are
 * found in event_relations by the threads_backfill background update. */
CREATE TABLE threads (
    room_id TEXT NOT NULL,
    -- The event ID of the root event in the thread.
    thread_id TEXT NOT NULL,
    -- The latest event ID and corresponding topo / stream ordering.
    latest_event_id TEXT NOT NULL,
    topological_ordering BIGINT NOT NULL,
    stream_ordering BIGINT NOT NULL,
    CONSTRAINT threads_uniqueness UNIQUE (room_id, thread_id)
);

CREATE INDEX threads_ordering_idx ON threads(room_id, topological_ordering, stream_ordering);

INSERT INTO background_updates (ordering, update_name, progress_json) VALUES
    (7309, 'threads_backfill', '{}');
