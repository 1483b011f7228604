/* Reference hashes are computed from the event JSON when needed. The table
 * and its data are gone: this delta cannot be reversed with data. */
DROP TABLE event_reference_hashes;
