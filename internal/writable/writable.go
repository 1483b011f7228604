// Package writable answers, before anything is written, whether this
// process may write a file (or create one in a directory), and when it may
// not, says why in the operator's terms: the path, who owns it and with
// which mode, and the user the process runs as. Its errors are of the
// permission class.
package writable

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"

	"hsops/internal/fault"
)

// Error is a path this process may not write.
type Error struct {
	// What names the path in the message ("SQLite database", "log file",
	// "the directory of the log file"...).
	What string
	// Path is the file or directory that is not writable; Of, when set,
	// names what it belongs to (`SQLite database "/srv/hs.db"`).
	Path string
	Of   string
	// ReadOnlyFS: the path is on a read-only file system (then the owner
	// does not matter).
	ReadOnlyFS bool
	// User and UID are who this process runs as; Owner, OwnerUID and Mode
	// describe the path.
	User     string
	UID      int
	Owner    string
	OwnerUID int
	Mode     fs.FileMode
	// Why says what needs the path, when it is not obvious ("SQLite
	// writes its journal there").
	Why string
}

func (e *Error) Error() string {
	name := fmt.Sprintf("%s %q", e.What, e.Path)
	if e.Of != "" {
		name += " of " + e.Of
	}
	if e.ReadOnlyFS {
		return name + " is on a read-only file system"
	}
	msg := fmt.Sprintf("%s is not writable by user %s (uid %d): it belongs to %s (uid %d), mode %04o",
		name, e.User, e.UID, e.Owner, e.OwnerUID, e.Mode.Perm())
	if e.Why != "" {
		msg += "; " + e.Why
	}
	return msg
}

// Class is fault.Permission.
func (e *Error) Class() fault.Class { return fault.Permission }

// Hint says whom to run it as, or what to change.
func (e *Error) Hint() string {
	if e.ReadOnlyFS {
		return "nothing was changed: remount it read-write, or change the path in <config>"
	}
	return fmt.Sprintf("nothing was changed: run it as %s (the owner), or let %s write there (e.g. chown %s %q)", e.Owner, e.User, e.User, e.Path)
}

// File says why this process cannot write path: an existing file must be
// writable; a missing one must be creatable in its directory (Dir). It
// returns nil when it can.
func File(path, what string) error {
	st, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Dir(filepath.Dir(path), fmt.Sprintf("%s %q", what, path), "")
	}
	if err != nil {
		return nil // whoever opens it says what is wrong
	}
	if st.IsDir() {
		return nil
	}
	return check(path, what, "", st)
}

// Dir says why this process cannot create files in dir; of names what
// the directory is for (`log file "/srv/hs.log"`) and why says what is
// written there when it is not that. Nil when it can, or when dir does not
// exist (creating it is another question).
func Dir(dir, of, why string) error {
	st, err := os.Stat(dir)
	if err != nil || !st.IsDir() {
		return nil
	}
	err = check(dir, "the directory", why, st)
	var e *Error
	if errors.As(err, &e) {
		e.Of = of
	}
	return err
}

// check asks the kernel (access(2): permissions, ACLs, read-only mounts,
// immutable files) whether the path may be written; a directory must also
// be searchable.
func check(path, what, why string, st fs.FileInfo) error {
	mode := uint32(2) // W_OK
	if st.IsDir() {
		mode |= 1 // X_OK
	}
	err := syscall.Access(path, mode)
	if err == nil {
		return nil
	}
	e := &Error{What: what, Path: path, Mode: st.Mode(), Why: why, ReadOnlyFS: errors.Is(err, syscall.EROFS)}
	e.UID = os.Getuid()
	e.User = userName(e.UID)
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		e.OwnerUID = int(sys.Uid)
		e.Owner = userName(e.OwnerUID)
	}
	return e
}

// userName names a uid ("uid N" when it has no name).
func userName(uid int) string {
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		return u.Username
	}
	return "uid " + strconv.Itoa(uid)
}
