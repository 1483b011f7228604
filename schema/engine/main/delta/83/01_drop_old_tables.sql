/* event_txn_id was replaced by event_txn_id_device_id at 74; its rows (at
 * most a day of transaction IDs) are gone once this runs. */
DROP TABLE event_txn_id;
