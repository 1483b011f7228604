package buildinfo

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

func TestFromBuildInfo(t *testing.T) {
	for _, c := range []struct {
		name     string
		version  string
		settings map[string]string
		want     string
	}{
		{"a release", "v1.2.3", nil, "v1.2.3"},
		{"vcs stamp", "(devel)", map[string]string{"vcs.revision": "8c1ad9be9afe9f3f79f91c2bc8d0080be6f16127", "vcs.modified": "false"}, "(devel) 8c1ad9be9afe"},
		{"vcs stamp, changes", "(devel)", map[string]string{"vcs.revision": "8c1ad9be9afe9f3f79f91c2bc8d0080be6f16127", "vcs.modified": "true"}, "(devel) 8c1ad9be9afe-dirty"},
		{"pseudo-version (Go 1.24+)", "v0.0.0-20261203112657-8c1ad9be9afe", map[string]string{"vcs.revision": "8c1ad9be9afe9f3f79f91c2bc8d0080be6f16127", "vcs.modified": "false"}, "(devel) 8c1ad9be9afe"},
		{"pseudo-version, dirty", "v0.0.0-20261203112657-8c1ad9be9afe+dirty", nil, "(devel) 8c1ad9be9afe-dirty"},
		{"pseudo-version after a tag", "v1.2.4-0.20261203112657-8c1ad9be9afe", nil, "(devel) 8c1ad9be9afe"},
		{"nothing recorded", "(devel)", nil, ""},
	} {
		info := &debug.BuildInfo{Main: debug.Module{Path: "hsops", Version: c.version}}
		for k, v := range c.settings {
			info.Settings = append(info.Settings, debug.BuildSetting{Key: k, Value: v})
		}
		if got := fromBuildInfo(info); got != c.want {
			t.Errorf("%s: got %q, want %q", c.name, got, c.want)
		}
	}
}

// TestResolve_PrefersTheBuildInfo: git (the checkout) is asked only when
// neither the linker nor the toolchain recorded a version, and a
// pseudo-version is translated, never shown as it is.
func TestResolve_PrefersTheBuildInfo(t *testing.T) {
	stamped := func(version string, settings ...string) func() (*debug.BuildInfo, bool) {
		return func() (*debug.BuildInfo, bool) {
			info := &debug.BuildInfo{Main: debug.Module{Path: "hsops", Version: version}}
			for i := 0; i+1 < len(settings); i += 2 {
				info.Settings = append(info.Settings, debug.BuildSetting{Key: settings[i], Value: settings[i+1]})
			}
			return info, true
		}
	}
	none := func() (*debug.BuildInfo, bool) { return nil, false }
	for _, c := range []struct {
		name     string
		linked   string
		info     func() (*debug.BuildInfo, bool)
		checkout string
		want     string
		asksGit  bool
	}{
		{"linked in", "v1.2.3", func() (*debug.BuildInfo, bool) { t.Error("the build info was read"); return nil, false }, "(devel) 000000000000", "v1.2.3", false},
		{"vcs.revision", "", stamped("(devel)", "vcs.revision", "8c1ad9be9afe9f3f79f91c2bc8d0080be6f16127", "vcs.modified", "true"), "(devel) 000000000000", "(devel) 8c1ad9be9afe-dirty", false},
		{"pseudo-version", "", stamped("v0.0.0-20261203112657-8c1ad9be9afe"), "(devel) 000000000000", "(devel) 8c1ad9be9afe", false},
		{"a release", "", stamped("v1.2.3"), "(devel) 000000000000", "v1.2.3", false},
		{"nothing recorded", "", stamped("(devel)"), "(devel) 8c1ad9be9afe", "(devel) 8c1ad9be9afe", true},
		{"no build info", "", none, "(devel) 8c1ad9be9afe", "(devel) 8c1ad9be9afe", true},
		{"nothing at all", "", none, "", "(devel)", true},
	} {
		asked := 0
		got := resolve(c.linked, c.info, func() string { asked++; return c.checkout })
		if got != c.want {
			t.Errorf("%s: got %q, want %q", c.name, got, c.want)
		}
		if want := map[bool]int{false: 0, true: 1}[c.asksGit]; asked != want {
			t.Errorf("%s: the checkout was asked %d times, want %d", c.name, asked, want)
		}
	}
}

// TestServerVersion is Version without spaces, the same on every call.
func TestServerVersion(t *testing.T) {
	got := ServerVersion()
	if want := "hsops/" + strings.ReplaceAll(Version(), " ", "-"); got != want || strings.Contains(got, " ") {
		t.Errorf("ServerVersion() = %q, want %q", got, want)
	}
	if again := ServerVersion(); again != got {
		t.Errorf("ServerVersion() changed: %q, then %q", got, again)
	}
}

// checkoutRevision is the HEAD of the checkout the tests run in; the test
// skips outside a git checkout (a source archive).
func checkoutRevision(t *testing.T) (root, rev string) {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	root = filepath.Join(filepath.Dir(file), "..", "..")
	out, err := exec.Command("git", "-C", root, "rev-parse", "HEAD").Output()
	if err != nil {
		t.Skipf("not in a git checkout: %v", err)
	}
	return root, strings.TrimSpace(string(out))[:12]
}

// TestVersion_NamesTheRevision: a binary built in a checkout (a clone or a
// git worktree, with or without -buildvcs) names its revision, not just
// "(devel)". This test's binary is one.
func TestVersion_NamesTheRevision(t *testing.T) {
	_, rev := checkoutRevision(t)
	want := regexp.MustCompile(`^\(devel\) ` + rev + `(-dirty)?$`)
	if got := Version(); !want.MatchString(got) {
		t.Errorf("Version() = %q, want %s", got, want)
	}
}

// TestVersion_GoBuild builds a tool as a user would (go build -o) and asks
// it: the revision, whether the toolchain recorded it or not; never the
// toolchain's pseudo-version (v0.0.0-20261203112657-8c1ad9be9afe) as it
// is. Only a checkout whose HEAD is tagged may answer with the tag.
func TestVersion_GoBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("builds port_db twice")
	}
	root, rev := checkoutRevision(t)
	pattern := `^port_db \(devel\) ` + rev + `(-dirty)?\n$`
	if out, err := exec.Command("git", "-C", root, "describe", "--exact-match", "--tags", "HEAD").Output(); err == nil {
		pattern = `^port_db (\(devel\) ` + rev + `(-dirty)?|` + regexp.QuoteMeta(strings.TrimSpace(string(out))) + `)\n$`
	}
	want := regexp.MustCompile(pattern)
	for _, flag := range []string{"-buildvcs=false", "-buildvcs=auto"} {
		bin := filepath.Join(t.TempDir(), "port_db")
		build := exec.Command("go", "build", flag, "-o", bin, "./cmd/port_db")
		build.Dir = root
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", flag, err, out)
		}
		out, err := exec.Command(bin, "--version").Output()
		if err != nil {
			t.Fatal(err)
		}
		if !want.Match(out) {
			t.Errorf("go build %s: --version printed %q, want %s", flag, out, want)
		}
		os.Remove(bin)
	}
}
