-- Drop room_stats_state.room_type.
-- drops: column room_stats_state.room_type (room statistics, recomputed by the populate_stats_process_rooms job)
ALTER TABLE room_stats_state DROP COLUMN room_type;
