package complete

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/Masterminds/semver/v3"
	"github.com/spf13/cobra"

	"hsops/internal/releases"
	"hsops/schema/engine"
)

// values returns what fn offers for toComplete after args, without the
// descriptions.
func values(t *testing.T, fn cobra.CompletionFunc, args []string, toComplete string) []string {
	t.Helper()
	got, dir := fn(nil, args, toComplete)
	if dir&cobra.ShellCompDirectiveNoFileComp == 0 {
		t.Errorf("directive %d offers files besides the values", dir)
	}
	out := make([]string, len(got))
	for i, c := range got {
		out[i] = strings.SplitN(c, "\t", 2)[0]
	}
	return out
}

func TestReleases_NewestFirstWithoutCandidates(t *testing.T) {
	var want []string
	all := releases.All()
	for i := len(all) - 1; i >= 0; i-- {
		if !all[i].RC {
			want = append(want, all[i].Version.String())
		}
	}
	got := values(t, Releases, nil, "")
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("Releases offers %q, want the release facts newest first %q", got, want)
	}
	for _, v := range got {
		if _, ok := releases.Find(mustParse(t, v)); !ok {
			t.Errorf("Releases offers %s, which releases.Find does not know", v)
		}
	}
}

func TestReleases_Prefix(t *testing.T) {
	for _, prefix := range []string{"1.9", "v1.9", "1.26", "v"} {
		got := values(t, Releases, nil, prefix)
		if len(got) == 0 {
			t.Errorf("Releases(%q) offers nothing", prefix)
		}
		for _, v := range got {
			if !strings.HasPrefix(v, prefix) {
				t.Errorf("Releases(%q) offers %q", prefix, v)
			}
		}
	}
	if got := values(t, Releases, nil, "9"); len(got) != 0 {
		t.Errorf("Releases(\"9\") offers %q, want nothing", got)
	}
}

func TestSchemaVersions_TheEngines(t *testing.T) {
	s := engine.Schema()
	got := values(t, SchemaVersions, nil, "")
	if len(got) != s.Version-s.Oldest+1 || got[0] != strconv.Itoa(s.Version) || got[len(got)-1] != strconv.Itoa(s.Oldest) {
		t.Fatalf("SchemaVersions offers %q, want %d down to %d", got, s.Version, s.Oldest)
	}
	for _, v := range values(t, SchemaVersions, nil, "7") {
		if !strings.HasPrefix(v, "7") {
			t.Errorf("SchemaVersions(\"7\") offers %q", v)
		}
	}
	all, _ := SchemaVersions(nil, nil, strconv.Itoa(s.Version))
	if len(all) != 1 || !strings.Contains(all[0], "\tSynapse v") {
		t.Errorf("SchemaVersions(%d) = %q, want one value described by its Synapse releases", s.Version, all)
	}
}

func TestJobs_TheEngines(t *testing.T) {
	want := engine.Schema().Updates.Jobs()
	got := values(t, Jobs, nil, "")
	if len(want) == 0 || strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("Jobs offers %q, want the engine's %q", got, want)
	}
}

func TestWordsAndFirstArg(t *testing.T) {
	w := FirstArg(Words("on", "run them", "off", "pause them"))
	if got := values(t, w, nil, ""); strings.Join(got, " ") != "on off" {
		t.Errorf("Words offers %q, want on off", got)
	}
	if got := values(t, w, nil, "of"); strings.Join(got, " ") != "off" {
		t.Errorf("Words(\"of\") offers %q, want off", got)
	}
	if got := values(t, w, []string{"on"}, ""); len(got) != 0 {
		t.Errorf("FirstArg after one argument offers %q, want nothing", got)
	}
}

func mustParse(t *testing.T, v string) *semver.Version {
	t.Helper()
	sv, err := releases.ParseVersion(v)
	if err != nil {
		t.Fatal(err)
	}
	return sv
}

// TestFlags_EachIsSomeToolsFlag: every flag the shared table completes is a
// flag of one of the tools (their reference pages, generated from the
// commands, list them), so that a renamed flag does not silently lose its
// completion; and every tool with arguments to complete has its page.
// (cli.CheckTree checks each tool's command paths.)
func TestFlags_EachIsSomeToolsFlag(t *testing.T) {
	pages, err := filepath.Glob("../../docs/reference/*.md")
	if err != nil || len(pages) == 0 {
		t.Fatalf("no reference pages: %v", err)
	}
	var all strings.Builder
	for _, p := range pages {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		all.Write(data)
	}
	for name := range flags {
		if !regexp.MustCompile(`--` + regexp.QuoteMeta(name) + `\b[^-]`).MatchString(all.String()) {
			t.Errorf("--%s is no tool's flag (not in docs/reference): remove it from the table, or rename it as the tool's flag is", name)
		}
	}
	for tool := range args {
		if _, err := os.Stat("../../docs/reference/" + tool + ".md"); err != nil {
			t.Errorf("completion arguments for %s, which has no reference page: %v", tool, err)
		}
	}
}
