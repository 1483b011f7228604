-- Drop event_failed_pull_attempts.
-- drops: table event_failed_pull_attempts (back-off state for fetching missing events; rebuilt as fetches fail again)
DROP TABLE event_failed_pull_attempts;
