package config

import (
	"path/filepath"
	"strings"
)

// Relative paths. Every path a configuration holds (pid_file,
// worker_pid_file, log_config, worker_log_config, signing_key_path,
// media_store_path, a SQLite database's args.database or database_path,
// and the file a log config's handler writes) is relative to the working
// directory of the process that reads it, never to the config file: the
// rule of Synapse, whose Config.abspath is Python's os.path.abspath. Load
// makes them absolute, so that every tool, the homeserver and its daemon
// mean the same files, and messages name them in full.

// ResolvePaths makes the configuration's relative paths absolute against
// wd (the working directory). Parse leaves them as written; Load calls it.
func (c *Config) ResolvePaths(wd string) {
	for _, p := range []*string{&c.PidFile, &c.WorkerPidFile, &c.LogConfig, &c.WorkerLogConfig, &c.SigningKeyPath, &c.MediaStorePath, &c.Dir} {
		*p = Abs(wd, *p)
	}
	for i, d := range c.Databases {
		if d.IsSQLite() {
			args := make(map[string]string, len(d.Args))
			for k, v := range d.Args {
				args[k] = v
			}
			args["database"] = sqliteAbs(wd, args["database"])
			c.Databases[i].Args = args
		}
	}
}

// Abs resolves a config path against wd, Synapse's way: "" stays "", an
// absolute path is cleaned, a relative one is joined to wd.
func Abs(wd, p string) string {
	if p == "" {
		return ""
	}
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(wd, p)
}

// sqliteAbs is Abs for a SQLite database, which may also be ":memory:"
// (kept, as Synapse keeps it) or a file: URI (kept as written).
func sqliteAbs(wd, p string) string {
	if p == ":memory:" || strings.HasPrefix(p, "file:") {
		return p
	}
	return Abs(wd, p)
}
