/* The stream ordering of the event a receipt points at, for notification
 * counts. */
ALTER TABLE receipts_linearized ADD COLUMN event_stream_ordering BIGINT;
