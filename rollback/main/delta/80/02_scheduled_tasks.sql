-- Drop scheduled_tasks.
-- loses: table scheduled_tasks (long-running tasks such as room purges, pending and finished)
DROP TABLE scheduled_tasks;
