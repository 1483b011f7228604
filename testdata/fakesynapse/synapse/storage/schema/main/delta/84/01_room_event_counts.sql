/* The stand-in release's own change: a table of event counts per room,
 * filled by a batched background update, then indexed by another that
 * waits for it. The first is named as, and walks the rooms as, Synapse's
 * populate_stats_process_rooms (by room_id, saving last_room_id), so that
 * hsops counts its work as it counts the real one's. */
CREATE TABLE IF NOT EXISTS room_event_counts (
    room_id TEXT NOT NULL,
    events BIGINT NOT NULL
);
INSERT INTO background_updates (ordering, update_name, progress_json) VALUES
  (8401, 'populate_stats_process_rooms', '{}');
INSERT INTO background_updates (ordering, update_name, progress_json, depends_on) VALUES
  (8402, 'room_event_counts_room_id_idx', '{}', 'populate_stats_process_rooms');
