/* Transaction IDs of sent events, keyed by device rather than by access
 * token, so that idempotency survives a token refresh. Replaces event_txn_id
 * (dropped at 83). */
CREATE TABLE event_txn_id_device_id (
    event_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    txn_id TEXT NOT NULL,
    inserted_ts BIGINT NOT NULL,
    FOREIGN KEY (event_id)
        REFERENCES events (event_id) ON DELETE CASCADE,
    FOREIGN KEY (user_id, device_id)
        REFERENCES devices (user_id, device_id) ON DELETE CASCADE
);

CREATE UNIQUE INDEX event_txn_id_device_id_event_id ON event_txn_id_device_id(event_id);
CREATE UNIQUE INDEX event_txn_id_device_id_txn_id ON event_txn_id_device_id(room_id, user_id, device_id, txn_id);
CREATE INDEX event_txn_id_device_id_ts ON event_txn_id_device_id(inserted_ts);
