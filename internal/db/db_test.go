package db_test

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"hsops/internal/config"
	"hsops/internal/db"
	"hsops/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func sqliteConfig(path string) config.Database {
	return config.Database{Label: "master", Name: config.EngineSQLite, Args: map[string]string{"database": path}}
}

func TestOpenSQLite_Refusals(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.db")
	if _, err := db.Open(ctx, sqliteConfig(missing), db.Options{}); !errors.Is(err, db.ErrNotFound) {
		t.Errorf("missing file: got %v, want ErrNotFound", err)
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Error("opening a missing file without Create created it")
	}
	text := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(text, []byte(strings.Repeat("this is not a database\n", 200)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Open(ctx, sqliteConfig(text), db.Options{}); !errors.Is(err, db.ErrNotDatabase) {
		t.Errorf("text file: got %v, want ErrNotDatabase", err)
	}
	if _, err := db.Open(ctx, sqliteConfig(dir), db.Options{}); !errors.Is(err, db.ErrNotDatabase) {
		t.Errorf("directory: got %v, want ErrNotDatabase", err)
	}
	// A real database whose pages were overwritten.
	good := filepath.Join(dir, "good.db")
	d, err := db.Open(ctx, sqliteConfig(good), db.Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Exec("CREATE TABLE t (x TEXT); INSERT INTO t VALUES ('a')"); err != nil {
		t.Fatal(err)
	}
	d.Close()
	data, _ := os.ReadFile(good)
	copy(data[0:16], []byte("garbage garbage!"))
	corrupt := filepath.Join(dir, "corrupt.db")
	if err := os.WriteFile(corrupt, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Open(ctx, sqliteConfig(corrupt), db.Options{}); !errors.Is(err, db.ErrNotDatabase) {
		t.Errorf("corrupt header: got %v, want ErrNotDatabase", err)
	}
}

func TestOpenSQLite_ReadOnlyWritesNothing(t *testing.T) {
	ctx := context.Background()
	p := filepath.Join(t.TempDir(), "hs.db")
	d, err := db.Open(ctx, sqliteConfig(p), db.Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Exec("PRAGMA journal_mode = WAL; CREATE TABLE t (x TEXT)"); err != nil {
		t.Fatal(err)
	}
	d.Close()
	before, _ := os.ReadFile(p)
	ro, err := db.Open(ctx, sqliteConfig(p), db.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ro.Exec("INSERT INTO t VALUES ('x')"); err == nil {
		t.Error("a read-only connection wrote")
	}
	ro.Close()
	after, _ := os.ReadFile(p)
	if string(before) != string(after) {
		t.Error("the file changed")
	}
	for _, suffix := range []string{"-wal", "-shm"} {
		if _, err := os.Stat(p + suffix); err == nil {
			t.Errorf("%s left behind", suffix)
		}
	}
}

func TestRebind(t *testing.T) {
	got := db.Rebind(db.Postgres, "SELECT a FROM t WHERE b = ? AND c = '?' AND d = ?")
	want := "SELECT a FROM t WHERE b = $1 AND c = '?' AND d = $2"
	if got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if s := db.Rebind(db.SQLite, "x = ?"); s != "x = ?" {
		t.Errorf("SQLite rebind changed the query: %q", s)
	}
}

// unreachable is a database section naming a loopback port nothing
// listens on, with a password.
func unreachable(t *testing.T) config.Database {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return config.Database{Label: "master", Name: config.EnginePostgres, Args: map[string]string{
		"host": "127.0.0.1", "port": strconv.Itoa(port), "user": "synapse", "password": "s3cr3t-pw", "dbname": "synapse", "cp_min": "5",
	}}
}

// checkUnreachable holds an error to ErrUnreachable on one line, saying
// the connection was refused (once), without the password.
func checkUnreachable(t *testing.T, err error) {
	t.Helper()
	if !errors.Is(err, db.ErrUnreachable) {
		t.Fatalf("got %v, want ErrUnreachable", err)
	}
	if strings.Contains(err.Error(), "s3cr3t-pw") {
		t.Fatalf("error %q shows the password", err)
	}
	if !strings.Contains(err.Error(), "refused") {
		t.Errorf("error %q should say the connection was refused", err)
	}
	if strings.Contains(err.Error(), "\n") || strings.Count(err.Error(), "connection refused") != 1 {
		t.Errorf("error %q should be one line, each cause once", err)
	}
}

func TestOpenPostgres_UnreachableSaysWhyWithoutPassword(t *testing.T) {
	_, err := db.Open(context.Background(), unreachable(t), db.Options{})
	checkUnreachable(t, err)
}

func TestOpenPostgres_UnknownArgument(t *testing.T) {
	cfg := config.Database{Name: config.EnginePostgres, Args: map[string]string{"host": "x", "sslmodee": "require"}}
	if _, err := db.Open(context.Background(), cfg, db.Options{}); !errors.Is(err, config.ErrInvalid) || !strings.Contains(err.Error(), "sslmodee") {
		t.Fatalf("got %v, want ErrInvalid naming the argument", err)
	}
}

func TestCheckServer_Locale(t *testing.T) {
	ctx := context.Background()
	good := pgtest.NewDatabase(t)
	d, err := db.Open(ctx, good.Config, db.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := db.CheckServer(ctx, d, false, false); err != nil {
		t.Errorf("C locale database: %v", err)
	}
	bad := pgtest.NewDatabaseWithLocale(t, "C.UTF-8")
	b, err := db.Open(ctx, bad.Config, db.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := db.CheckServer(ctx, b, false, false); !errors.Is(err, db.ErrBadLocale) {
		t.Errorf("C.UTF-8 database: got %v, want ErrBadLocale", err)
	}
	if err := db.CheckServer(ctx, b, true, false); err != nil {
		t.Errorf("allow_unsafe_locale: got %v", err)
	}
	if err := db.CheckNewPostgres(ctx, b); !errors.Is(err, db.ErrBadLocale) {
		t.Errorf("new database check has no override: got %v", err)
	}
}
