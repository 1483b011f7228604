/* Room type (MSC1772 spaces) in the room statistics. */
ALTER TABLE room_stats_state ADD room_type TEXT;
