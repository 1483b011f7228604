// Package proc is process control for a homeserver deployment: the model
// of its processes (a main process and workers, each with its pid file),
// the supervisor that starts, stops and inspects them, the daemonization of
// the engine, and the one answer to "is the homeserver running on this
// database?" (HomeserverRunning) that every tool asks before it changes a
// database.
//
// A pid file is trusted only as far as the process it names proves it:
// that process must be alive and not a zombie, look like a homeserver, and,
// when its command line names configs, have been started with the configs
// the caller is asking about (else it is another homeserver's process);
// one whose configs cannot be read must have started before the pid file
// was written (else the pid was recycled: a judgment of two clocks, the
// boot clock of the start time and the wall clock of the pid file, that a
// step of the wall clock can fool, so it is not applied to a process its
// configs prove, nor by a Supervisor to a process it started itself).
// Stop waits for a process by its pid and start time until every thread of
// it has ended, not for its pid file.
// A SQLite database is also in use while any other process holds the file
// open. Everything is read from /proc; where /proc is missing, the checks
// that need it are skipped and the pid file is taken on its word.
//
// The supervisor reports progress through a callback (Event) and returns
// data; it prints nothing.
package proc
