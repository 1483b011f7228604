// Package buildinfo reports the version of the hsops binaries.
//
// Release builds inject the version with
//
//	go build -ldflags "-X hsops/internal/buildinfo.version=v1.2.3"
//
// Every other build falls back to what the Go toolchain recorded in the
// binary: the module version of `go install hsops/cmd/...@v1.2.3`, or the
// VCS revision of the checkout it was built in ("(devel) 8c1ad9be9afe",
// "-dirty" with uncommitted changes).
//
// The toolchain records no revision when the build ran with
// -buildvcs=false (GOFLAGS) or in a git worktree (whose .git is a file,
// which go build does not recognise). Then the checkout the binary was
// built from, named by the source paths compiled into it, is asked with
// git, and its answer is used only when it is sure to be the build's: HEAD
// has not moved since the binary was written. Otherwise the version is
// "(devel)".
//
// The version is worked out once per process: the homeserver logs it at
// start and serves it on every server_version request.
package buildinfo

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"time"
)

// version is set at link time; empty means "ask the build info".
var version string

var (
	once   sync.Once
	cached string

	serverOnce   sync.Once
	serverCached string
)

// Version returns the version string shown by every tool's --version.
func Version() string {
	once.Do(func() { cached = resolve(version, debug.ReadBuildInfo, fromCheckout) })
	return cached
}

// resolve is the version: the one linked in, else what the toolchain
// recorded in the binary, else the checkout's answer (the only way that
// runs git), else "(devel)".
func resolve(linked string, readBuildInfo func() (*debug.BuildInfo, bool), checkout func() string) string {
	if linked != "" {
		return linked
	}
	if info, ok := readBuildInfo(); ok {
		if v := fromBuildInfo(info); v != "" {
			return v
		}
	}
	if v := checkout(); v != "" {
		return v
	}
	return "(devel)"
}

// fromBuildInfo is the version the toolchain recorded: a release's module
// version, or the VCS revision ("" when there is neither).
func fromBuildInfo(info *debug.BuildInfo) string {
	var rev string
	dirty := false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	v := info.Main.Version
	if v != "" && v != "(devel)" && !isPseudo(v) {
		return v
	}
	if rev == "" && isPseudo(v) {
		// v0.0.0-20261203112657-8c1ad9be9afe[+dirty]
		base, plus, _ := strings.Cut(v, "+")
		rev = base[strings.LastIndex(base, "-")+1:]
		dirty = plus == "dirty"
	}
	if rev == "" {
		return ""
	}
	return devel(rev, dirty)
}

func devel(rev string, dirty bool) string {
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if dirty {
		rev += "-dirty"
	}
	return "(devel) " + rev
}

// isPseudo reports whether v is a Go pseudo-version
// (vX.Y.Z-[0.]yyyymmddhhmmss-abcdefabcdef), which the toolchain makes from
// the VCS revision of an untagged checkout.
func isPseudo(v string) bool {
	base, _, _ := strings.Cut(v, "+")
	parts := strings.Split(base, "-")
	if len(parts) < 3 {
		return false
	}
	rev, stamp := parts[len(parts)-1], parts[len(parts)-2]
	if i := strings.LastIndex(stamp, "."); i >= 0 {
		stamp = stamp[i+1:]
	}
	return len(rev) == 12 && isDigits(stamp) && len(stamp) == 14
}

func isDigits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return s != ""
}

// fromCheckout asks the checkout this binary was built from for its
// revision; "" unless that checkout is still here, is hsops, and its HEAD
// has not moved since the binary was written.
func fromCheckout() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok || !filepath.IsAbs(file) { // -trimpath
		return ""
	}
	root := filepath.Join(filepath.Dir(file), "..", "..")
	mod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil || !bytes.HasPrefix(mod, []byte("module hsops\n")) {
		return ""
	}
	exe, err := os.Executable()
	if err != nil {
		return ""
	}
	st, err := os.Stat(exe)
	if err != nil {
		return ""
	}
	built := st.ModTime()
	git := func(args ...string) (string, bool) {
		out, err := exec.Command("git", append([]string{"-C", root}, args...)...).Output()
		return strings.TrimSpace(string(out)), err == nil
	}
	// HEAD, and its reflog, which is appended each time HEAD moves (commit,
	// checkout, reset, rebase): written before the binary, HEAD is the
	// build's.
	out, ok := git("rev-parse", "HEAD", "--path-format=absolute", "--git-path", "logs/HEAD")
	rev, reflog, _ := strings.Cut(out, "\n")
	if !ok || rev == "" || reflog == "" {
		return ""
	}
	moved, err := os.Stat(reflog)
	if err != nil || !moved.ModTime().Before(built) {
		return ""
	}
	changed, ok := git("--no-optional-locks", "status", "--porcelain", "--untracked-files=no")
	if !ok {
		return ""
	}
	return devel(rev, builtWithChanges(root, changed, built))
}

// builtWithChanges reports whether a file changed in the checkout (lines
// of git status --porcelain) was changed before the binary was written, so
// that the binary may hold the change.
func builtWithChanges(root, porcelain string, built time.Time) bool {
	for _, line := range strings.Split(porcelain, "\n") {
		if len(line) < 4 {
			continue
		}
		path := line[3:]
		if _, to, ok := strings.Cut(path, " -> "); ok {
			path = to
		}
		st, err := os.Stat(filepath.Join(root, strings.Trim(path, `"`)))
		if err != nil || st.ModTime().Before(built) {
			return true
		}
	}
	return false
}

// ServerVersion is the version string the homeserver engine reports on
// /_synapse/admin/v1/server_version. It never contains spaces so that tools
// parsing "hsops/<version>" can split on the slash.
func ServerVersion() string {
	serverOnce.Do(func() { serverCached = "hsops/" + strings.ReplaceAll(Version(), " ", "-") })
	return serverCached
}
