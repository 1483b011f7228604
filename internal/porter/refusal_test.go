package porter

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"hsops/internal/config"
	"hsops/internal/db"
	"hsops/internal/dbtest"
	"hsops/internal/fault"
	"hsops/internal/gen"
	"hsops/internal/pgtest"
	"hsops/internal/store"
	"hsops/schema"
	"hsops/schema/engine"
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
	if fault.ClassOf(err) != fault.InUse || !strings.HasPrefix(fault.HintOf(err), "stop the process holding it first (pid "+strconv.Itoa(cmd.Process.Pid)) {
		t.Fatalf("got class %v, hint %q; want in-use, naming the holder", fault.ClassOf(err), fault.HintOf(err))
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
		if _, err := engine.Schema().Apply(ctx, d, schema.Options{}); err != nil {
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
		// The identities' creation times are dates, not Unix milliseconds.
		if regexp.MustCompile(`created \d{10,}`).MatchString(err.Error()) || !regexp.MustCompile(`created \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC`).MatchString(err.Error()) {
			t.Errorf("the identities are not readable: %v", err)
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

// copyFile copies a SQLite file (an older snapshot kept aside).
func copyFile(t *testing.T, from string) string {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	to := filepath.Join(t.TempDir(), "snapshot.db")
	if err := os.WriteFile(to, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return to
}

// contents is every table of the target, for "nothing was written".
func contents(t *testing.T, cfg config.Database) string {
	t.Helper()
	return dbtest.Contents(t, openPG(t, cfg))
}

// message is a new m.room.message in the generator's first room.
func message(body string, ts int64) *store.Event {
	return &store.Event{RoomID: "!room1:example.org", Type: "m.room.message", Sender: "@user1:example.org",
		Content: map[string]any{"msgtype": "m.text", "body": body}, OriginServerTS: ts}
}

// persist writes events as the homeserver would, each in its transaction.
func persist(t *testing.T, d *db.DB, events ...*store.Event) {
	t.Helper()
	ctx := context.Background()
	st := store.New(d, "example.org", "master")
	for _, e := range events {
		if err := st.Tx(ctx, func(tx *sqlTx) error { return st.Persist(ctx, tx, e) }); err != nil {
			t.Fatal(err)
		}
	}
}

// addEvents persists n new messages in a SQLite source.
func addEvents(t *testing.T, src string, n int) {
	t.Helper()
	s := openSQLite(t, src)
	for i := 0; i < n; i++ {
		persist(t, s, message("later", int64(1800000000000+i)))
	}
	s.Close()
}

// TestPort_RefusesBeforeWriting: every refusal of a source or target that
// can only be seen by reading it comes before the first write, so a
// finished port survives a bad next run untouched.
func TestPort_RefusesBeforeWriting(t *testing.T) {
	ctx := context.Background()
	t.Run("corrupt data page", func(t *testing.T) {
		src := smallSource(t)
		s := openSQLite(t, src)
		var root, size int64
		if err := s.QueryRow("SELECT rootpage FROM sqlite_master WHERE name = 'event_json'").Scan(&root); err != nil {
			t.Fatal(err)
		}
		if err := s.QueryRow("PRAGMA page_size").Scan(&size); err != nil {
			t.Fatal(err)
		}
		s.Close()
		f, err := os.OpenFile(src, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt([]byte(strings.Repeat("\xde\xad\xbe\xef", int(size)/4)), (root-1)*size); err != nil {
			t.Fatal(err)
		}
		f.Close()
		tgt := pgtest.NewDatabase(t)
		_, err = port(t, src, tgt.Config)
		if !errors.Is(err, ErrSource) || !strings.Contains(err.Error(), "the SQLite database is corrupt") {
			t.Fatalf("got %v, want the source refused as corrupt", err)
		}
		assertEmpty(t, tgt.Config)
	})
	t.Run("a table the schema does not have", func(t *testing.T) {
		src := smallSource(t)
		s := openSQLite(t, src)
		if _, err := s.Exec("CREATE TABLE my_custom (x TEXT); INSERT INTO my_custom VALUES ('mine')"); err != nil {
			t.Fatal(err)
		}
		s.Close()
		tgt := pgtest.NewDatabase(t)
		for _, dry := range []bool{true, false} {
			_, err := port(t, src, tgt.Config, func(o *Options) { o.DryRun = dry })
			if !errors.Is(err, ErrSource) || !strings.Contains(err.Error(), "tables exist only in the SQLite database") || !strings.Contains(err.Error(), "my_custom") {
				t.Fatalf("dry run %v: got %v", dry, err)
			}
		}
		assertEmpty(t, tgt.Config)
	})
	t.Run("a column the schema does not have", func(t *testing.T) {
		src := smallSource(t)
		s := openSQLite(t, src)
		if _, err := s.Exec("ALTER TABLE users ADD COLUMN my_col TEXT"); err != nil {
			t.Fatal(err)
		}
		s.Close()
		tgt := pgtest.NewDatabase(t)
		_, err := port(t, src, tgt.Config)
		if !errors.Is(err, ErrSource) || !strings.Contains(err.Error(), "columns of users exist only in the SQLite database: my_col") {
			t.Fatalf("got %v", err)
		}
		assertEmpty(t, tgt.Config)
	})
	t.Run("someone else's rows in a re-copied table", func(t *testing.T) {
		tgt := pgtest.NewDatabase(t)
		d := openPG(t, tgt.Config)
		if _, err := engine.Schema().Apply(ctx, d, schema.Options{}); err != nil {
			t.Fatal(err)
		}
		if _, err := d.Exec("INSERT INTO profiles (user_id, displayname, full_user_id) VALUES ('alice', 'Alice', '@alice:else.org')"); err != nil {
			t.Fatal(err)
		}
		before := contents(t, tgt.Config)
		_, err := port(t, smallSource(t), tgt.Config)
		if !errors.Is(err, ErrTarget) || !strings.Contains(err.Error(), "already holds data (table profiles is not empty)") {
			t.Fatalf("got %v", err)
		}
		if got := contents(t, tgt.Config); got != before {
			t.Fatalf("the refused target changed:\n%s", dbtest.DiffLines(before, got))
		}
	})

	// The next cases begin with a finished port, which the refused run
	// must leave exactly as it was.
	finished := func(t *testing.T) (src string, tgt config.Database, before string) {
		src = smallSource(t)
		tgt = pgtest.NewDatabase(t).Config
		mustPort(t, src, tgt)
		return src, tgt, contents(t, tgt)
	}
	unchanged := func(t *testing.T, tgt config.Database, before string) {
		t.Helper()
		if got := contents(t, tgt); got != before {
			t.Fatalf("the refused run changed the finished port:\n%s", dbtest.DiffLines(before, got))
		}
	}
	t.Run("rowids moved", func(t *testing.T) {
		src, tgt, before := finished(t)
		s := openSQLite(t, src)
		if _, err := s.Exec("UPDATE event_json SET rowid = -rowid; UPDATE event_json SET rowid = (SELECT count(*) FROM event_json) + 1 + rowid"); err != nil {
			t.Fatal(err)
		}
		s.Close()
		_, err := port(t, src, tgt)
		if !errors.Is(err, ErrSource) || !strings.Contains(err.Error(), "the rows of event_json moved since the last run") {
			t.Fatalf("got %v", err)
		}
		unchanged(t, tgt, before)
	})
	t.Run("an older snapshot after a newer one", func(t *testing.T) {
		src := smallSource(t)
		older := copyFile(t, src)
		addEvents(t, src, 5)
		tgt := pgtest.NewDatabase(t).Config
		mustPort(t, src, tgt)
		before := contents(t, tgt)
		_, err := port(t, older, tgt)
		if !errors.Is(err, ErrSource) || !strings.Contains(err.Error(), "older than what was already ported") {
			t.Fatalf("got %v", err)
		}
		unchanged(t, tgt, before)
	})
	t.Run("the homeserver wrote to the target since", func(t *testing.T) {
		src, tgt, _ := finished(t)
		persist(t, openPG(t, tgt), message("on PostgreSQL now", 1900000000000))
		before := contents(t, tgt)
		_, err := port(t, src, tgt)
		if !errors.Is(err, ErrTarget) || !strings.Contains(err.Error(), "the homeserver has written to") {
			t.Fatalf("got %v", err)
		}
		unchanged(t, tgt, before)
	})
}
