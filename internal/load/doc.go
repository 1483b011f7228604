// Package load drives a running homeserver through its client API, as
// many clients at once would, and reads it back.
//
// Run registers users (shared-secret registration), has them create rooms,
// join them and send messages from a number of concurrent clients, then
// reads pages of /messages and searches, timing every request: per kind of
// request it reports the count, the errors, requests/s and latency
// percentiles. Check logs in as given users, pages forward through every
// room they joined and digests every message they can read: the same
// digest before and after an upgrade, a port or a rollback means every
// message is intact.
//
// BenchPort measures port_db on a generated database against a raw COPY of
// the same rows into the same, fully indexed schema, and against the floor
// of port_db's method (the rows by COPY into bare tables, then the same
// index builds, porter.RawLoad), all in one run.
//
// All return their report; the caller renders it.
package load
