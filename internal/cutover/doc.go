// Package cutover switches a running homeserver from SQLite to PostgreSQL
// in one step (port_db --switch-config), with seconds of downtime and an
// automatic way back.
//
// # Sequence
//
// A consistent snapshot of the live SQLite file is ported while the
// homeserver serves (the pre-copy), again if new rows piled up meanwhile;
// then the homeserver and its workers are stopped as synctl stops them, the
// live file is ported once more (only rows new since the snapshot move for
// append-only tables) and verified; the config's database section is
// rewritten to the PostgreSQL one; the processes are started as synctl
// starts them and every /health is waited for. The downtime is measured
// from the stop to the last process healthy.
//
// The final port's cost follows what moved, not the database's size: the
// pre-copy checked every page (quick_check of its snapshots), so the final
// port checks the pages it reads as it reads them; the re-copied tables
// equal on both sides are kept; and what it copied is verified, not both
// databases whole (porter's final.go argues each).
//
// # The way back
//
// Any failure before the homeserver serves from PostgreSQL puts the old
// config back and starts the homeserver on SQLite again. Once the main
// process answers /health on PostgreSQL it may have taken writes there, so
// a later failure (a worker that does not start) is reported, never rolled
// back.
//
// # The invariant under kill -9
//
// The config is rewritten (write, fsync, rename) only after the final port
// completed and verified, and the port marks itself incomplete at its start
// (hsops_port.completed_ts): so the config never names a half-ported
// database. Killed before the rewrite, the config is the old one and the
// same command does the whole job again (only new rows move); killed after
// it, the same command finds the config already on a complete port and
// only starts the homeserver.
//
// # Config rewrite
//
// The database section is found through yaml.v3's node tree and replaced as
// text: every byte outside it (comments, order, blank lines, quoting) stays
// as it was, and the result is proved by loading it. In a config split over
// files or a directory, the file edited is the one whose database section
// is in force (the last that sets it). The old file is kept beside it,
// dated, under a name that does not end in .yaml.
package cutover
