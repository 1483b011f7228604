/* Tables every physical database gets, on both engines. */

CREATE TABLE background_updates (
    update_name text NOT NULL,
    progress_json text NOT NULL,
    depends_on text,
    ordering INT NOT NULL DEFAULT 0,
    CONSTRAINT background_updates_uniqueness UNIQUE (update_name)
);

/* The mark of a database the hsops engine created: tools use it to tell an
 * engine database (whose schema hsops owns) from a Synapse one. The last
 * rollback is recorded there too (from, to, when), so that status can say
 * how the database reached its version. */
CREATE TABLE hsops_engine (
    Lock CHAR(1) NOT NULL DEFAULT 'X' UNIQUE,
    engine TEXT NOT NULL,
    created_version INTEGER NOT NULL,
    created_ts BIGINT NOT NULL,
    rolled_back_from INTEGER,
    rolled_back_to INTEGER,
    rolled_back_ts BIGINT,
    CHECK (Lock='X')
);
