/* The presence table has been unused since presence_stream replaced it. Its
 * rows are gone once this runs. */
DROP TABLE presence;
