-- Drop the scheduled_tasks timestamp index.
DROP INDEX scheduled_tasks_timestamp;
