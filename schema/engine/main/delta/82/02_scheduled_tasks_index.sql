/* The scheduler looks for due tasks by time. */
CREATE INDEX scheduled_tasks_timestamp ON scheduled_tasks(timestamp);
