package db_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5"

	"hsops/internal/config"
	"hsops/internal/db"
	"hsops/internal/fault"
	"hsops/internal/pgtest"
)

// TestCheckWritable_HotStandby: a hot standby of the test server (made
// with pg_basebackup) is "a read-only replica", of the permission class.
func TestCheckWritable_HotStandby(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a standby server")
	}
	adminURL := pgtest.AdminURL(t)
	admin, err := url.Parse(adminURL)
	if err != nil {
		t.Fatal(err)
	}
	// A standby needs at least the primary's max_connections.
	primary, err := pgx.Connect(context.Background(), adminURL)
	if err != nil {
		t.Fatal(err)
	}
	var maxConns string
	err = primary.QueryRow(context.Background(), "SHOW max_connections").Scan(&maxConns)
	primary.Close(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	bin := func(name string) string {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
		m, _ := filepath.Glob("/usr/lib/postgresql/*/bin/" + name)
		if len(m) == 0 {
			t.Skipf("no %s", name)
		}
		return m[len(m)-1]
	}
	dir, err := os.MkdirTemp("", "hsops-standby-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Skip("running as root needs a postgres user to run the server")
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	run := func(name string, args ...string) error {
		cmd := exec.Command(bin(name), args...)
		cmd.Dir = dir
		if cred != nil {
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %v: %s", name, err, out)
		}
		return nil
	}
	role := admin.User.Username()
	data := filepath.Join(dir, "data")
	if err := run("pg_basebackup", "-h", admin.Hostname(), "-p", admin.Port(), "-U", role, "-D", data, "-R", "-c", "fast", "--no-sync"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("cannot copy the test server for a standby: %v", err)
		}
		t.Skipf("cannot copy the test server for a standby: %v", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	if err := run("pg_ctl", "-D", data, "-l", filepath.Join(dir, "server.log"), "-w", "-t", "60",
		"-o", "-c listen_addresses=127.0.0.1 -c max_connections="+maxConns+" -p "+port+" -k "+dir, "start"); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "server.log"))
		t.Fatalf("%v\n%s", err, log)
	}
	t.Cleanup(func() { _ = run("pg_ctl", "-D", data, "-m", "immediate", "stop") })

	cfg := config.Database{Label: "master", Name: config.EnginePostgres, Args: map[string]string{
		"host": "127.0.0.1", "port": port, "user": role, "dbname": "postgres", "sslmode": "disable"}}
	ctx := context.Background()
	d, err := db.Open(ctx, cfg, db.Options{})
	if err != nil {
		t.Fatal(err)
	}
	err = db.CheckWritable(ctx, d)
	d.Close()
	if !errors.Is(err, db.ErrReadOnlyServer) || fault.ClassOf(err) != fault.Permission {
		t.Fatalf("got %v, want ErrReadOnlyServer (permission)", err)
	}
	if !strings.HasSuffix(err.Error(), ": this server is a read-only replica (a hot standby: pg_is_in_recovery() is true)") {
		t.Errorf("got %q", err)
	}
}
