-- Drop timeline_gaps.
-- loses: table timeline_gaps (where room timelines have gaps that clients are told about)
DROP TABLE timeline_gaps;
