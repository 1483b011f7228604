-- Drop un_partial_stated_event_stream.
-- drops: table un_partial_stated_event_stream (a replication stream; positions are not needed once every worker has read them)
DROP TABLE un_partial_stated_event_stream;
