-- Recreate the presence table, empty.
-- restores-empty: table presence (unused since presence_stream replaced it; its rows were dropped at schema 73)
CREATE TABLE presence(
    user_id TEXT NOT NULL,
    state VARCHAR(20),
    status_msg TEXT,
    mtime BIGINT,
    UNIQUE (user_id)
);
