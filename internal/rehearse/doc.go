// Package rehearse runs a homeserver's upgrade for real on a scratch copy of
// its database, while the homeserver keeps running on the original, and
// reports how it went: what the upgrade will do, how long the homeserver
// will be down for it, how long its background work takes, and what fails
// and how to fix it, before production finds out.
//
// # The copy
//
// The original is only ever read. A SQLite database in WAL mode (Synapse's)
// is copied with SQLite's online backup API inside one read transaction:
// one consistent snapshot, the WAL's committed frames included, and the
// homeserver keeps writing. In rollback-journal mode (the engine's) a read
// transaction makes every writer wait but also freezes the file, so the
// file is copied as it is under it, at the speed of a plain copy; when
// another process has the file open, the backup API is tried first without
// the lock (SQLite restarts it when that process writes), and after a few
// restarts the locked copy is made (how long writers waited is reported). A PostgreSQL
// database is copied on its own server: with CREATE DATABASE ... TEMPLATE
// when no other session is connected to it (an exact copy), otherwise from
// one exported snapshot (REPEATABLE READ, pg_export_snapshot): the schema
// is read in the snapshot and rebuilt, every table is streamed with COPY by
// several sessions that joined the snapshot, then keys, indexes, foreign
// keys, triggers and sequence values follow, as pg_dump | pg_restore would,
// and the copy can be checked table by table against the source at the
// snapshot. Free space is checked first.
//
// # The upgrade
//
// An hsops engine database is upgraded with the engine's own machinery: the
// planned deltas (the blocking phase: the homeserver applies them at
// start-up, before it serves; each delta timed with the rows it touched),
// then every background update (the background phase: they run while it
// serves; each timed with its items and batches), flat out, and the pace of
// a serving homeserver is estimated from the same batches and the config's
// sleeps. A Synapse database is upgraded by the Synapse release installed
// at --python, running its update_synapse_database (package synapse), which
// also recognises Synapse's hang after failed background updates. Every
// table's rows are counted before and after, and upgrade-check's database
// checks run on the result.
//
// # Scratch copies
//
// Copies are named hsops-rehearse-<file>-<time>-<pid> (a SQLite scratch
// directory, locked while in use) and hsops_rehearse_<db>_<time>_<pid> (a
// PostgreSQL database, whose sessions carry its name as their
// application_name). A copy is dropped at the end, also when the upgrade
// fails or the run is interrupted; a killed run leaves at most its copy,
// which the next rehearsal of the same database (or Clean) removes once no
// running rehearsal holds it. --keep renames the copy hsops-rehearsed-...,
// which only Clean removes.
package rehearse
