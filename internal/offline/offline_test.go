package offline

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"hsops/internal/config"
	"hsops/internal/db"
	"hsops/internal/dbtest"
	"hsops/internal/fault"
	"hsops/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// holdOpen starts a process that keeps path open until the test ends.
func holdOpen(t *testing.T, path string) {
	t.Helper()
	ready := filepath.Join(t.TempDir(), "ready")
	cmd := exec.Command("sh", "-c", `exec 3<"$1"; touch "$2"; exec sleep 60`, "sh", path, ready)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	for i := 0; i < 200; i++ {
		if _, err := os.Stat(ready); err == nil {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("the holder did not start")
}

func TestOpen_SQLiteFileHeldOpen(t *testing.T) {
	ctx := context.Background()
	tg := dbtest.New(t, db.SQLite)
	tg.Open(t).Close()
	cfg := &config.Config{Databases: []config.Database{tg.Config}}
	holdOpen(t, tg.Config.SQLitePath())

	before := 0
	opts := Options{AppName: "hsops test", Before: func(context.Context) error { before++; return nil }}
	_, err := Open(ctx, cfg, tg.Config, opts)
	if !errors.Is(err, ErrInUse) || fault.ClassOf(err) != fault.InUse {
		t.Fatalf("Open = %v, want ErrInUse of class in-use", err)
	}
	if !strings.Contains(err.Error(), "is open in another process (pid ") || !strings.Contains(err.Error(), "sleep 60") {
		t.Errorf("error %q does not say who holds the file", err)
	}
	if before != 0 {
		t.Errorf("Before ran %d times after a refusal", before)
	}

	opts.Force = true
	d, err := Open(ctx, cfg, tg.Config, opts)
	if err != nil {
		t.Fatalf("Open with Force: %v", err)
	}
	d.Close()
	if before != 1 {
		t.Errorf("Before ran %d times, want 1", before)
	}
}

func TestOpen_OtherPostgresSessions(t *testing.T) {
	ctx := context.Background()
	tg := dbtest.New(t, db.Postgres)
	cfg := &config.Config{Databases: []config.Database{tg.Config}}

	// Another hsops update_database session does not count.
	ours, err := db.Open(ctx, tg.Config, db.Options{AppName: "hsops update_database status"})
	if err != nil {
		t.Fatal(err)
	}
	defer ours.Close()
	if err := ours.PingContext(ctx); err != nil {
		t.Fatal(err)
	}
	d, err := Open(ctx, cfg, tg.Config, Options{AppName: "hsops update_database test"})
	if err != nil {
		t.Fatalf("Open with only hsops sessions connected: %v", err)
	}
	d.Close()

	other, err := db.Open(ctx, tg.Config, db.Options{AppName: "homeserver"})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := other.PingContext(ctx); err != nil {
		t.Fatal(err)
	}
	_, err = Open(ctx, cfg, tg.Config, Options{AppName: "hsops update_database test"})
	if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), "homeserver (server pid") {
		t.Fatalf("Open with a homeserver session = %v, want ErrInUse naming it", err)
	}
	if d, err = Open(ctx, cfg, tg.Config, Options{AppName: "hsops update_database test", Force: true}); err != nil {
		t.Fatalf("Open with Force: %v", err)
	}
	d.Close()
}
