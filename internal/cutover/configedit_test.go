package cutover

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var when = time.Date(2026, 12, 3, 12, 50, 0, 0, time.UTC)

const pgSection = `database:
  name: psycopg2   # the new one
  args:
    user: synapse
    password: "secret"
    host: 127.0.0.1
    dbname: synapse
`

func writeFile(t *testing.T, path, content string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o640); err != nil {
		t.Fatal(err)
	}
	return path
}

// pgConfig writes the --postgres-config of the tests.
func pgConfig(t *testing.T, dir string) string {
	t.Helper()
	return writeFile(t, filepath.Join(dir, "pg.yaml"), "server_name: example.org\n# PostgreSQL\n"+pgSection)
}

// checkSplice holds a rewrite to its promise: the bytes before and after
// the database section are the old file's, and the section is pg.yaml's.
func checkSplice(t *testing.T, e *ConfigEdit, before, oldSection, after string) {
	t.Helper()
	if e.OldSection != oldSection {
		t.Errorf("old section:\n%q\nwant\n%q", e.OldSection, oldSection)
	}
	if !strings.HasSuffix(e.NewSection, pgSection) {
		t.Errorf("new section:\n%s\ndoes not end with pg.yaml's:\n%s", e.NewSection, pgSection)
	}
	if want := before + e.NewSection + after; string(e.New) != want {
		t.Errorf("new file:\n%s\nwant\n%s", e.New, want)
	}
}

func TestPlanConfigEdit_KeepsEveryOtherByte(t *testing.T) {
	dir := t.TempDir()
	before := `# Configuration file for the homeserver.
server_name: "example.org"   # never change this
pid_file: /srv/hs/homeserver.pid

listeners:
  - port: 8008
    bind_addresses: ['127.0.0.1']   # loopback
    resources:
      - names: [client, federation]
`
	section := `database:
  # SQLite for now
  name: sqlite3
  args:

    database: /srv/hs/homeserver.db   # the file
`
	after := `# The log config (this comment belongs to log_config).

log_config: "/srv/hs/log.config"
trusted_key_servers:
  - server_name: "matrix.org"
`
	cfg := writeFile(t, filepath.Join(dir, "homeserver.yaml"), before+section+after)
	e, err := PlanConfigEdit(cfg, pgConfig(t, dir), when)
	if err != nil {
		t.Fatal(err)
	}
	checkSplice(t, e, before, section, after)
	if e.File != cfg {
		t.Errorf("file %s, want %s", e.File, cfg)
	}
	if !strings.Contains(e.NewSection, "homeserver.yaml.sqlite-20261203T125000Z") {
		t.Errorf("the new section does not name the kept copy:\n%s", e.NewSection)
	}
}

func TestPlanConfigEdit_Forms(t *testing.T) {
	for _, tc := range []struct {
		name, before, section, after string
	}{
		{"last, no final newline", "server_name: example.org\n", "database:\n  name: sqlite3\n  args: {database: hs.db}", ""},
		{"first", "", "database:\n  name: sqlite3\n  args:\n    database: hs.db\n", "server_name: example.org\n"},
		{"flow style", "server_name: example.org\n", "database: {name: sqlite3, args: {database: hs.db}}\n", "pid_file: hs.pid\n"},
		{"document start", "---\nserver_name: example.org\n", "database:\n    name: sqlite3\n    args:\n        database: hs.db\n", "\n\n# end\n"},
		{"comment at column 1 inside", "server_name: example.org\n", "database:\n  name: sqlite3\n# the file:\n  args:\n    database: hs.db\n", "# after\npid_file: hs.pid\n"},
		{"CRLF", "server_name: example.org\r\n", "database:\r\n  name: sqlite3\r\n  args:\r\n    database: hs.db\r\n", "pid_file: hs.pid\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := writeFile(t, filepath.Join(dir, "homeserver.yaml"), tc.before+tc.section+tc.after)
			e, err := PlanConfigEdit(cfg, pgConfig(t, dir), when)
			if err != nil {
				t.Fatal(err)
			}
			checkSplice(t, e, tc.before, tc.section, tc.after)
		})
	}
}

func TestPlanConfigEdit_SplitConfig(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "conf.d")
	first := writeFile(t, filepath.Join(conf, "10-main.yaml"), "server_name: example.org\ndatabase:\n  name: sqlite3\n  args: {database: old.db}\n")
	db := writeFile(t, filepath.Join(conf, "20-database.yaml"), "# the database\ndatabase:\n  name: sqlite3\n  args:\n    database: hs.db\n")
	last := writeFile(t, filepath.Join(conf, "30-listeners.yaml"), "pid_file: hs.pid\n")
	e, err := PlanConfigEdit(conf, pgConfig(t, dir), when)
	if err != nil {
		t.Fatal(err)
	}
	if e.File != db {
		t.Fatalf("edits %s, want %s (the last file that sets database)", e.File, db)
	}
	checkSplice(t, e, "# the database\n", "database:\n  name: sqlite3\n  args:\n    database: hs.db\n", "")
	if strings.HasSuffix(e.Backup, ".yaml") || filepath.Dir(e.Backup) != conf {
		t.Errorf("backup %s: want it beside the file, not ending in .yaml", e.Backup)
	}
	if err := e.Apply(); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{first, last} {
		data, _ := os.ReadFile(f)
		if strings.Contains(string(data), "psycopg2") {
			t.Errorf("%s was edited", f)
		}
	}
	got, err := currentDatabase(conf)
	if err != nil {
		t.Fatal(err)
	}
	if !got.IsPostgres() || got.Args["dbname"] != "synapse" {
		t.Errorf("the directory's database is %s", got)
	}
}

func TestPlanConfigEdit_Refusals(t *testing.T) {
	for _, tc := range []struct {
		name, content string
		want          error
	}{
		{"several documents", "server_name: a\ndatabase: {name: sqlite3, args: {database: a.db}}\n---\nx: 1\n", ErrConfigEdit},
		{"multi-database form", "server_name: a\ndatabases:\n  one: {name: sqlite3, args: {database: a.db}}\n", ErrConfigEdit},
		{"alias", "x: &db {name: sqlite3, args: {database: a.db}}\ndatabase: *db\n", ErrConfigEdit},
		{"one flow mapping", "{server_name: a, database: {name: sqlite3, args: {database: a.db}}}\n", ErrConfigEdit},
		{"set twice", "database: {name: sqlite3, args: {database: a.db}}\ndatabase: {name: sqlite3, args: {database: b.db}}\n", ErrConfigEdit},
		{"no database", "server_name: a\n", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := writeFile(t, filepath.Join(dir, "homeserver.yaml"), tc.content)
			_, err := PlanConfigEdit(cfg, pgConfig(t, dir), when)
			if err == nil {
				t.Fatal("no error")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("error %v, want %v", err, tc.want)
			}
			data, _ := os.ReadFile(cfg)
			if string(data) != tc.content {
				t.Error("the config changed")
			}
		})
	}
}

func TestConfigEdit_ApplyAndRestore(t *testing.T) {
	dir := t.TempDir()
	old := "server_name: example.org\n# db\ndatabase:\n  name: sqlite3\n  args:\n    database: hs.db\npid_file: hs.pid\n"
	cfg := writeFile(t, filepath.Join(dir, "homeserver.yaml"), old)
	e, err := PlanConfigEdit(cfg, pgConfig(t, dir), when)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Apply(); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(cfg)
	if string(got) != string(e.New) {
		t.Errorf("config after Apply:\n%s", got)
	}
	kept, err := os.ReadFile(e.Backup)
	if err != nil || string(kept) != old {
		t.Errorf("kept copy %s: %q, %v", e.Backup, kept, err)
	}
	for _, f := range []string{cfg, e.Backup} {
		st, _ := os.Stat(f)
		if st.Mode().Perm() != 0o640 {
			t.Errorf("%s: mode %v, want 0640", f, st.Mode().Perm())
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 3 {
		t.Errorf("files left in the directory: %v", entries)
	}
	if err := e.Restore(); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(cfg); string(got) != old {
		t.Errorf("config after Restore:\n%s", got)
	}
}
