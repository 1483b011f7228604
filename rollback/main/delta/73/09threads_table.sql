-- Drop threads and its back-fill.
-- dequeues: threads_backfill
-- drops: table threads (the latest event of each thread, derived from event_relations)
DELETE FROM background_updates WHERE update_name = 'threads_backfill';
DROP TABLE threads;
