/* Events we failed to fetch from other servers, for back-off. */
CREATE TABLE event_failed_pull_attempts(
    room_id TEXT NOT NULL REFERENCES rooms (room_id),
    event_id TEXT NOT NULL,
    num_attempts INT NOT NULL,
    last_attempt_ts BIGINT NOT NULL,
    last_cause TEXT NOT NULL,
    PRIMARY KEY (room_id, event_id)
);

CREATE INDEX event_failed_pull_attempts_room_id ON event_failed_pull_attempts(room_id);
