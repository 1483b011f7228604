-- Recreate event_reference_hashes, empty.
-- irreversible: event_reference_hashes was dropped at schema 72 with its rows; it comes back empty and the hashes of older events are not recomputed
-- affects: table events (the events whose reference hashes are not given back)
CREATE TABLE event_reference_hashes (
    event_id TEXT,
    algorithm TEXT,
    hash BYTEA,
    UNIQUE (event_id, algorithm)
);
CREATE INDEX event_reference_hashes_id ON event_reference_hashes(event_id);
