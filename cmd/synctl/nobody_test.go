package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"hsops/internal/usertest"
)

// TestStart_AsUserWhoCannotWriteTheLog: a homeserver that cannot write
// its log file refuses to start with the permission class, and synctl ends
// with the same class (15), printing the homeserver's reason.
func TestStart_AsUserWhoCannotWriteTheLog(t *testing.T) {
	u := usertest.Nobody(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	engine, err := exec.LookPath("homeserver")
	if err != nil {
		t.Fatal(err)
	}
	dir := usertest.Dir(t)
	synctl := usertest.Install(t, dir, "synctl", exe)
	usertest.Install(t, dir, "homeserver", engine)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cfg := fmt.Sprintf("server_name: example.org\nreport_stats: false\npid_file: homeserver.pid\nlisteners:\n  - port: %d\n    type: http\n    bind_addresses: ['127.0.0.1']\ndatabase:\n  name: sqlite3\n  args:\n    database: homeserver.db\n", port)
	if err := os.WriteFile(filepath.Join(dir, "hs.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	log := filepath.Join(dir, "homeserver.log")
	if err := os.WriteFile(log, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"start", "hs.yaml"}, {"--no-daemonize", "start", "hs.yaml"}} {
		cmd := u.Command(synctl, args...)
		cmd.Dir = dir
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		_ = cmd.Run()
		if code := cmd.ProcessState.ExitCode(); code != 15 {
			t.Errorf("synctl %s: exit %d, want 15 (permission, as the homeserver's); output:\n%s", strings.Join(args, " "), code, out.String())
		}
		want := fmt.Sprintf("homeserver: error: log file %q is not writable by user nobody (uid %d): it belongs to root (uid 0), mode 0600", log, u.UID)
		if !strings.Contains(out.String(), want) {
			t.Errorf("synctl %s: output:\n%s\nwant the homeserver's reason:\n%s", strings.Join(args, " "), out.String(), want)
		}
	}
}
