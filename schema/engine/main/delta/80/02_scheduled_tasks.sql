/* The task scheduler: long-running tasks (room purges, ...) that survive a
 * restart. */
CREATE TABLE scheduled_tasks(
    id TEXT PRIMARY KEY,
    action TEXT NOT NULL,
    status TEXT NOT NULL,
    timestamp BIGINT NOT NULL,
    resource_id TEXT,
    params TEXT,
    result TEXT,
    error TEXT
);

CREATE INDEX scheduled_tasks_status ON scheduled_tasks(status);
