package porter

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"hsops/internal/config"
	"hsops/internal/db"
	"hsops/internal/gen"
	"hsops/internal/pgtest"
	"hsops/schema"
)

func smallSource(t *testing.T) string {
	return engineSource(t, gen.Params{Users: 3, Rooms: 1, Messages: 30, Seed: 9})
}

func TestPort_RefusesBadSources(t *testing.T) {
	dir := t.TempDir()
	tgt := pgtest.NewDatabase(t)

	text := filepath.Join(dir, "notes.db")
	_ = os.WriteFile(text, []byte(strings.Repeat("not a database at all\n", 300)), 0o600)

	foreign := filepath.Join(dir, "foreign.db")
	fd, err := db.Open(context.Background(), config.Database{Name: config.EngineSQLite, Args: map[string]string{"database": foreign}}, db.Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	_, _ = fd.Exec("CREATE TABLE recipes (name TEXT)")
	fd.Close()

	vacuum := smallSource(t)
	s := openSQLite(t, vacuum)
	if _, err := s.Exec("PRAGMA auto_vacuum = FULL; VACUUM"); err != nil {
		t.Fatal(err)
	}
	s.Close()

	pending := smallSource(t)
	s = openSQLite(t, pending)
	if _, err := s.Exec("INSERT INTO background_updates (update_name, progress_json) VALUES ('populate_stats_process_rooms', '{}')"); err != nil {
		t.Fatal(err)
	}
	s.Close()

	cases := []struct {
		name, path string
		want       error
		msg        string
	}{
		{"missing file", filepath.Join(dir, "missing.db"), db.ErrNotFound, "missing.db"},
		{"not a database", text, db.ErrNotDatabase, "not a valid SQLite database"},
		{"not a homeserver database", foreign, ErrSource, "not a homeserver database"},
		{"auto_vacuum", vacuum, ErrSource, "auto_vacuum is enabled"},
		{"pending background updates", pending, ErrSource, "pending background updates exist in the SQLite database (populate_stats_process_rooms)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := port(t, c.path, tgt.Config)
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("got %v, want %v containing %q", err, c.want, c.msg)
			}
			assertEmpty(t, tgt.Config)
		})
	}
}

func TestPort_RefusesASourceOpenElsewhere(t *testing.T) {
	src := smallSource(t)
	cmd := exec.Command("sh", "-c", `exec 3<"$0"; sleep 30`, src)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	time.Sleep(200 * time.Millisecond)
	tgt := pgtest.NewDatabase(t)
	_, err := port(t, src, tgt.Config)
	if !errors.Is(err, ErrSource) || !strings.Contains(err.Error(), "open in another process (pid "+strconv.Itoa(cmd.Process.Pid)) {
		t.Fatalf("got %v, want the source refused naming pid %d", err, cmd.Process.Pid)
	}
	assertEmpty(t, tgt.Config)
	if _, err := port(t, src, tgt.Config, func(o *Options) { o.AllowInUse = true }); err != nil {
		t.Fatalf("with AllowInUse: %v", err)
	}
}

func TestPort_RefusesBadTargets(t *testing.T) {
	ctx := context.Background()
	src := smallSource(t)

	t.Run("wrong locale", func(t *testing.T) {
		tgt := pgtest.NewDatabaseWithLocale(t, "C.UTF-8")
		_, err := port(t, src, tgt.Config)
		if !errors.Is(err, db.ErrBadLocale) {
			t.Fatalf("got %v, want ErrBadLocale", err)
		}
		assertEmpty(t, tgt.Config)
	})
	t.Run("unreachable", func(t *testing.T) {
		l, _ := net.Listen("tcp", "127.0.0.1:0")
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		cfg := config.Database{Name: config.EnginePostgres, Args: map[string]string{"host": "127.0.0.1", "port": strconv.Itoa(port), "user": "x", "dbname": "x", "password": "pw-secret"}}
		_, err := Run(ctx, Options{SQLitePath: src, Target: cfg})
		if !errors.Is(err, db.ErrUnreachable) || strings.Contains(err.Error(), "pw-secret") {
			t.Fatalf("got %v, want ErrUnreachable without the password", err)
		}
	})
	t.Run("someone else's data", func(t *testing.T) {
		tgt := pgtest.NewDatabase(t)
		d := openPG(t, tgt.Config)
		if _, err := schema.Engine().Apply(ctx, d, schema.Options{}); err != nil {
			t.Fatal(err)
		}
		if _, err := d.Exec("INSERT INTO users (name, creation_ts, admin, is_guest, deactivated) VALUES ('@someone:else.org', 1, 0, 0, 0)"); err != nil {
			t.Fatal(err)
		}
		_, err := port(t, src, tgt.Config)
		if !errors.Is(err, ErrTarget) || !strings.Contains(err.Error(), "already holds data (table users is not empty)") {
			t.Fatalf("got %v", err)
		}
		if n := count(t, d, "SELECT count(*) FROM users"); n != 1 {
			t.Errorf("users now %d", n)
		}
	})
	t.Run("a port of a different source", func(t *testing.T) {
		tgt := pgtest.NewDatabase(t)
		mustPort(t, src, tgt.Config)
		other := smallSource(t)
		_, err := port(t, other, tgt.Config)
		if !errors.Is(err, ErrTarget) || !strings.Contains(err.Error(), "holds a port of a different database") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("rowids moved between runs", func(t *testing.T) {
		tgt := pgtest.NewDatabase(t)
		mine := smallSource(t)
		mustPort(t, mine, tgt.Config)
		s := openSQLite(t, mine)
		// What a VACUUM of a table without an INTEGER PRIMARY KEY can do:
		// the same rowids now hold other rows.
		if _, err := s.Exec("UPDATE event_json SET rowid = -rowid; UPDATE event_json SET rowid = (SELECT count(*) FROM event_json) + 1 + rowid"); err != nil {
			t.Fatal(err)
		}
		s.Close()
		_, err := port(t, mine, tgt.Config)
		if !errors.Is(err, ErrSource) || !strings.Contains(err.Error(), "the rows of event_json moved since the last run") {
			t.Fatalf("got %v", err)
		}
	})
}
