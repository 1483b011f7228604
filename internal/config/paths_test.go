package config

import (
	"os"
	"path/filepath"
	"testing"
)

// TestLoad_RelativePathsFromWorkingDirectory: one rule for every relative
// path, Synapse's: the working directory, not the config's directory.
func TestLoad_RelativePathsFromWorkingDirectory(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "conf"), 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "conf"), "hs.yaml", `server_name: example.org
pid_file: homeserver.pid
log_config: log.config
signing_key_path: keys/example.org.signing.key
media_store_path: ./media
worker_pid_file: /run/../run/w1.pid
database:
  name: sqlite3
  args:
    database: data/homeserver.db
`)
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Chdir(wd) })
	if err := os.Chdir(dir); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load("conf/hs.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, got, want string }{
		{"pid_file", cfg.PidFile, filepath.Join(dir, "homeserver.pid")},
		{"log_config", cfg.LogConfig, filepath.Join(dir, "log.config")},
		{"signing_key_path", cfg.SigningKeyPath, filepath.Join(dir, "keys/example.org.signing.key")},
		{"media_store_path", cfg.MediaStorePath, filepath.Join(dir, "media")},
		{"worker_pid_file", cfg.WorkerPidFile, "/run/w1.pid"},
		{"database", cfg.Databases[0].SQLitePath(), filepath.Join(dir, "data/homeserver.db")},
		{"config directory", cfg.Dir, filepath.Join(dir, "conf")},
	} {
		if c.got != c.want {
			t.Errorf("%s: got %q, want %q", c.name, c.got, c.want)
		}
	}
}

func TestResolvePaths_KeepsWhatIsNotAFile(t *testing.T) {
	cfg, err := Parse([]File{{Name: "hs.yaml", Data: []byte("server_name: x\ndatabase:\n  name: sqlite3\n  args:\n    database: ':memory:'\n")}})
	if err != nil {
		t.Fatal(err)
	}
	cfg.ResolvePaths("/srv")
	if got := cfg.Databases[0].SQLitePath(); got != ":memory:" {
		t.Errorf("database: got %q, want :memory:", got)
	}
	if cfg.PidFile != "" {
		t.Errorf("an absent pid_file became %q", cfg.PidFile)
	}
}
