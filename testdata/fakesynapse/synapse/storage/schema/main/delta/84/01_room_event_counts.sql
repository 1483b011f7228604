/* The stand-in release's own change: a table of event counts per room,
 * filled by a batched background update, then indexed by another that
 * waits for it. */
CREATE TABLE IF NOT EXISTS room_event_counts (
    room_id TEXT NOT NULL,
    events BIGINT NOT NULL
);
INSERT INTO background_updates (ordering, update_name, progress_json) VALUES
  (8401, 'room_event_counts_populate', '{}');
INSERT INTO background_updates (ordering, update_name, progress_json, depends_on) VALUES
  (8402, 'room_event_counts_room_id_idx', '{}', 'room_event_counts_populate');
