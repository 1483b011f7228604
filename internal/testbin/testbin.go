// Package testbin gives the tests that run the project's commands as
// separate programs (the journeys, the switch's and the CLIs' kill and
// interrupt tests, synctl's scripts) the binaries of those commands.
//
// Linking a command takes seconds (the binaries are large, static and
// carry their debug information); several test packages of one
// `go test ./...` need the same ones, and so does the next run. The
// commands are therefore built by `go build -o` into one directory per
// checkout that outlives the test process, under the user's cache
// directory: go build leaves a binary there alone when it is up to date
// (its build ID is that of the sources, flags and toolchain of this
// build) and relinks it otherwise, so a stale binary is never used.
// Builds from concurrent test processes are serialised by a lock on that
// directory, and each test process gets hard links (or copies) in a
// directory of its own: the paths a test runs, signals or looks for in
// /proc are its own, as when each test built its own binaries.
//
// It is a test helper: no shipped binary links it.
package testbin

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// EnvDir names the variable that, when set, is the directory the commands
// are built into instead of one under the user's cache directory.
const EnvDir = "HSOPS_TESTBIN_DIR"

// Install builds the main packages matched by pkgs (import paths or
// patterns, e.g. "hsops/cmd/..."), if they are not up to date, and puts
// each into dir under its command name. It returns the names.
func Install(dir string, pkgs ...string) ([]string, error) {
	if len(pkgs) == 0 {
		return nil, errors.New("testbin: no package to build")
	}
	root, err := moduleRoot()
	if err != nil {
		return nil, err
	}
	mains, err := mainPackages(root, pkgs)
	if err != nil {
		return nil, err
	}
	cache, err := cacheDir(root)
	if err != nil {
		return nil, err
	}
	unlock, err := lock(cache)
	if err != nil {
		return nil, err
	}
	defer unlock()
	build := exec.Command("go", append([]string{"build", "-o", cache + string(filepath.Separator)}, mains...)...)
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build %s: %v\n%s", strings.Join(mains, " "), err, out)
	}
	var names []string
	for _, p := range mains {
		name := p[strings.LastIndex(p, "/")+1:]
		if err := linkOrCopy(filepath.Join(cache, name), filepath.Join(dir, name)); err != nil {
			return nil, err
		}
		names = append(names, name)
	}
	return names, nil
}

// TempDir is Install into a new temporary directory, which the caller
// removes.
func TempDir(pkgs ...string) (string, error) {
	dir, err := os.MkdirTemp("", "hsops-testbin-")
	if err != nil {
		return "", err
	}
	if _, err := Install(dir, pkgs...); err != nil {
		os.RemoveAll(dir)
		return "", err
	}
	return dir, nil
}

// Command is Install of the one command pkg into dir (a new temporary
// directory of the test when dir is ""): it returns the command's path, and
// fails the test when it cannot be built.
func Command(tb testing.TB, dir, pkg string) string {
	tb.Helper()
	if dir == "" {
		dir = tb.TempDir()
	}
	names, err := Install(dir, pkg)
	if err != nil {
		tb.Fatal(err)
	}
	if len(names) != 1 {
		tb.Fatalf("testbin: %s is %d commands, want one", pkg, len(names))
	}
	return filepath.Join(dir, names[0])
}

// moduleRoot is the directory of the go.mod of the working directory (a
// test runs in its package's directory).
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("testbin: go env GOMOD: %v", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("testbin: not inside a module")
	}
	return filepath.Dir(gomod), nil
}

// mainPackages expands pkgs to the import paths of the commands among them.
func mainPackages(root string, pkgs []string) ([]string, error) {
	list := exec.Command("go", append([]string{"list", "-f", "{{if eq .Name \"main\"}}{{.ImportPath}}{{end}}"}, pkgs...)...)
	list.Dir = root
	var stderr bytes.Buffer
	list.Stderr = &stderr
	out, err := list.Output()
	if err != nil {
		return nil, fmt.Errorf("go list %s: %v\n%s", strings.Join(pkgs, " "), err, stderr.String())
	}
	mains := strings.Fields(string(out))
	if len(mains) == 0 {
		return nil, fmt.Errorf("testbin: no command among %s", strings.Join(pkgs, " "))
	}
	return mains, nil
}

// cacheDir is the build directory of the checkout at root: EnvDir, or
// hsops-testbin/<hash of root> under the user's cache directory (the
// system's temporary directory when there is none).
func cacheDir(root string) (string, error) {
	if d := os.Getenv(EnvDir); d != "" {
		return d, os.MkdirAll(d, 0o755)
	}
	base, err := os.UserCacheDir()
	if err != nil {
		base = os.TempDir()
	}
	sum := sha256.Sum256([]byte(root))
	dir := filepath.Join(base, "hsops-testbin", hex.EncodeToString(sum[:8]))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	// The checkout it serves, so that prune can tell when it is gone.
	if err := os.WriteFile(filepath.Join(dir, "root"), []byte(root), 0o644); err != nil {
		return "", err
	}
	prune(filepath.Dir(dir), dir)
	return dir, nil
}

// prune removes the build directories of checkouts that no longer exist
// (a removed git worktree), so that they do not pile up.
func prune(parent, keep string) {
	entries, _ := os.ReadDir(parent)
	for _, e := range entries {
		dir := filepath.Join(parent, e.Name())
		if !e.IsDir() || dir == keep {
			continue
		}
		root, err := os.ReadFile(filepath.Join(dir, "root"))
		if err != nil {
			continue
		}
		if _, err := os.Stat(filepath.Join(string(root), "go.mod")); errors.Is(err, os.ErrNotExist) {
			_ = os.RemoveAll(dir)
		}
	}
}

// lock takes the build directory's lock, waiting for another test
// process's build to finish.
func lock(dir string) (unlock func(), err error) {
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("testbin: lock %s: %w", dir, err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

// linkOrCopy makes dst the file src: a hard link, or a copy across file
// systems. A later build replaces src by a new file, never in place, so
// the link keeps what was built now.
func linkOrCopy(src, dst string) error {
	_ = os.Remove(dst)
	if err := os.Link(src, dst); err == nil {
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
