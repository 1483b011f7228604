-- Drop event_txn_id_device_id.
-- drops: table event_txn_id_device_id (transaction IDs of the last day's sends; a client retrying a send across the rollback may post it twice)
DROP TABLE event_txn_id_device_id;
