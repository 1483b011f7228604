// Package usertest runs programs as another user in tests: the homeserver
// started as the wrong user, which must refuse what that user may not
// write. Tests run as root make the case by running the program as
// nobody; run as anyone else they skip (only root can change users).
package usertest

import (
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
)

// User is the other user.
type User struct {
	Name     string
	UID, GID int
}

// Nobody returns the user nobody; it skips the test unless it runs as root
// and the user exists.
func Nobody(tb testing.TB) User {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("running a program as another user needs root")
	}
	u, err := user.Lookup("nobody")
	if err != nil {
		tb.Skipf("no user nobody: %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return User{Name: u.Username, UID: uid, GID: gid}
}

// Command runs path as the user, with no supplementary groups.
func (u User) Command(path string, args ...string) *exec.Cmd {
	cmd := exec.Command(path, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(u.UID), Gid: uint32(u.GID), Groups: []uint32{}}}
	return cmd
}

// Dir is a new directory every user may write (mode 0777, root's),
// removed after the test. (t.TempDir's parents are closed to other users.)
func Dir(tb testing.TB) string {
	tb.Helper()
	dir, err := os.MkdirTemp("", "hsops-usertest-")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		tb.Fatal(err)
	}
	return dir
}

// Install copies the executable src into dir as name (mode 0755), so that
// another user can run it, and returns its path.
func Install(tb testing.TB, dir, name, src string) string {
	tb.Helper()
	in, err := os.Open(src)
	if err != nil {
		tb.Fatal(err)
	}
	defer in.Close()
	dst := filepath.Join(dir, name)
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		tb.Fatal(err)
	}
	if err := out.Close(); err != nil {
		tb.Fatal(err)
	}
	return dst
}
