-- Drop receipts_linearized.event_stream_ordering.
-- drops: column receipts_linearized.event_stream_ordering (the stream ordering of the receipt's event, derived from events)
ALTER TABLE receipts_linearized DROP COLUMN event_stream_ordering;
