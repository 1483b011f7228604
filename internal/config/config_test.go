package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func write(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoad_RealSynapseConfig(t *testing.T) {
	// A config shaped like Synapse's generated homeserver.yaml: most keys are
	// of no interest to hsops and must be ignored.
	cfg, err := Load("testdata/synapse-homeserver.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ServerName != "matrix.example.com" || cfg.PidFile != "/data/homeserver.pid" {
		t.Errorf("got server_name %q pid_file %q", cfg.ServerName, cfg.PidFile)
	}
	d, err := cfg.MainDatabase()
	if err != nil {
		t.Fatal(err)
	}
	if !d.IsPostgres() || d.DBName() != "synapse" || d.Args["host"] != "db.internal" || d.Args["port"] != "5432" || !d.AllowUnsafeLocale {
		t.Errorf("got database %s %+v", d, d.Args)
	}
	if len(cfg.Listeners) != 2 || cfg.Listeners[0].Port != 8008 || !cfg.Listeners[0].HasResource("client") {
		t.Errorf("got listeners %+v", cfg.Listeners)
	}
	if !cfg.Has("enable_legacy_metrics") {
		t.Error("unknown keys must stay readable for upgrade checks")
	}
	if v, ok := cfg.Raw("caches.global_factor"); !ok || fmt.Sprint(v) != "1" {
		t.Errorf("Raw(caches.global_factor) = %v, %v", v, ok)
	}
	if cfg.BackgroundUpdates.DefaultBatchSize != 50 || cfg.BackgroundUpdates.DurationMS != 100 {
		t.Errorf("background_updates: got %+v, want default_batch_size 50 and the default duration", cfg.BackgroundUpdates)
	}
}

func TestLoad_DirectoryMergesInNameOrder(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "10-base.yaml", "server_name: a.example\npid_file: /run/a.pid\ndatabase:\n  name: sqlite3\n  args:\n    database: a.db\n")
	write(t, dir, "20-db.yaml", "database:\n  name: sqlite3\n  args:\n    database: b.db\n")
	write(t, dir, "README.txt", "not yaml")
	write(t, dir, "30-empty.yaml", "")
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	d, _ := cfg.MainDatabase()
	if filepath.Base(d.SQLitePath()) != "b.db" || cfg.ServerName != "a.example" {
		t.Errorf("later files replace whole top-level keys: got database %q server_name %q", d.SQLitePath(), cfg.ServerName)
	}
	warnings := strings.Join(cfg.Warnings, "\n")
	for _, want := range []string{"does not end in '.yaml'", "subdirectory", "is empty"} {
		if !strings.Contains(warnings, want) {
			t.Errorf("warnings %q lack %q", warnings, want)
		}
	}
	if cfg.Dir != dir {
		t.Errorf("config dir %q, want %q", cfg.Dir, dir)
	}
}

func TestLoad_SeveralFilesInOrder(t *testing.T) {
	dir := t.TempDir()
	a := write(t, dir, "a.yaml", "server_name: first\nworker_app: synapse.app.homeserver\n")
	b := write(t, dir, "b.yaml", "worker_app: synapse.app.generic_worker\nworker_name: w1\n")
	cfg, err := Load(a, b)
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.IsWorker() || cfg.WorkerName != "w1" || cfg.ServerName != "first" {
		t.Errorf("got worker=%v name=%q server=%q", cfg.IsWorker(), cfg.WorkerName, cfg.ServerName)
	}
}

func TestLoad_MultiDatabase(t *testing.T) {
	cfg, err := Parse([]File{{Name: "hs.yaml", Data: []byte(`
databases:
  basement:
    name: psycopg2
    data_stores: [main]
    args: {user: synapse, dbname: main_db, host: localhost}
  attic:
    name: psycopg2
    data_stores: [state]
    args: {user: synapse, database: state_db, host: localhost}
`)}})
	if err != nil {
		t.Fatal(err)
	}
	m, _ := cfg.DatabaseFor("main")
	s, _ := cfg.DatabaseFor("state")
	if m.Label != "basement" || s.Label != "attic" || s.DBName() != "state_db" {
		t.Errorf("got main %s (%s), state %s (%s)", m.Label, m, s.Label, s)
	}
}

func TestParse_Errors(t *testing.T) {
	cases := []struct {
		name, yaml, want string
	}{
		{"both forms", "database: {name: sqlite3, args: {database: a}}\ndatabases: {x: {name: sqlite3, args: {database: b}}}", "both 'database' and 'databases'"},
		{"bad engine", "database: {name: mysql, args: {}}", `unsupported database type "mysql"`},
		{"sqlite without path", "database: {name: sqlite3, args: {}}", "needs args.database"},
		{"port is a map", "database: {name: psycopg2, args: {port: {a: 1}}}", `"database.args.port" must be a string or a number`},
		{"listeners wrong type", "listeners: 8008", `"listeners"`},
		{"bad yaml", "database: [", "hs.yaml"},
		{"state twice", "databases:\n  a: {name: psycopg2, data_stores: [main, state], args: {}}\n  b: {name: psycopg2, data_stores: [state], args: {}}", `"state" data store already configured`},
		{"no main", "databases:\n  a: {name: psycopg2, data_stores: [state], args: {}}", `no "main" database configured`},
		{"min batch", "background_updates: {min_batch_size: 0}", "min_batch_size must be greater than 0"},
		{"database is a string", "database: postgres://u:secret@h/db", `"database" must be a mapping`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]File{{Name: "hs.yaml", Data: []byte(c.yaml)}})
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want ErrInvalid containing %q", err, c.want)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("error %q leaks the password", err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q is not one line", err)
			}
		})
	}
}

func TestLoad_Missing(t *testing.T) {
	if _, err := Load(filepath.Join(t.TempDir(), "nope.yaml")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("got %v, want ErrNotFound", err)
	}
}

func TestDatabase_NeverPrintsPassword(t *testing.T) {
	cfg, err := Parse([]File{{Name: "hs.yaml", Data: []byte("database: {name: psycopg2, args: {user: u, password: hunter2, host: h, port: 5433, dbname: d}}")}})
	if err != nil {
		t.Fatal(err)
	}
	d, _ := cfg.MainDatabase()
	for _, s := range []string{d.String(), fmt.Sprint(d), fmt.Sprintf("%v %+v %#v %s", d, d, d, d)} {
		if strings.Contains(s, "hunter2") {
			t.Fatalf("%q shows the password", s)
		}
	}
	if d.String() != "postgresql://u@h:5433/d" {
		t.Errorf("got %q", d.String())
	}
}

func FuzzParse(f *testing.F) {
	for _, p := range []string{"testdata/synapse-homeserver.yaml"} {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("database: {name: sqlite3, args: {database: x.db}}"))
	f.Add([]byte("databases: {a: {name: psycopg2, data_stores: [main, state]}}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse([]File{{Name: "fuzz.yaml", Data: data}})
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v is not ErrInvalid", err)
			}
			return
		}
		for _, d := range cfg.Databases {
			if d.Name != EngineSQLite && d.Name != EnginePostgres {
				t.Fatalf("accepted engine %q", d.Name)
			}
			_ = d.String()
		}
	})
}
