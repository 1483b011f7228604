package releases

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/Masterminds/semver/v3"
)

const shared = "../../testdata/shared"

// seedSections finds every "Upgrading to vX.Y.Z" section heading in the
// seeds: markdown headings in the docs book, heading lines in the text
// renderings of older upgrade pages.
func seedSections(t *testing.T) map[string][]string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(shared, "seeds", "*"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no seeds found under %s", shared)
	}
	md := regexp.MustCompile(`(?m)^# Upgrading to v([0-9][0-9.]*)\s*$`)
	txt := regexp.MustCompile(`(?m)^(?:- )?Upgrading to v([0-9][0-9.]*)\s*$`)
	out := map[string][]string{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		re := txt
		if strings.HasSuffix(f, ".md") {
			re = md
		}
		for _, m := range re.FindAllStringSubmatch(string(data), -1) {
			out[m[1]] = append(out[m[1]], filepath.Base(f))
		}
	}
	return out
}

func TestNotes_CoverEverySeedSection(t *testing.T) {
	sections := seedSections(t)
	if len(sections) < 70 {
		t.Fatalf("found only %d sections in the seeds", len(sections))
	}
	have := map[string]int{}
	for _, n := range Notes() {
		have[n.SemVer().String()]++
	}
	for v, files := range sections {
		sv, err := ParseVersion(v)
		if err != nil {
			t.Errorf("section v%s: %v", v, err)
			continue
		}
		if have[sv.String()] == 0 {
			t.Errorf("section \"Upgrading to v%s\" (in %s) has no entry in data/notes.yaml", v, strings.Join(files, ", "))
		}
	}
	// The newer page's notes (headings lost in the seed) are covered too.
	for _, v := range []string{"1.81.0", "1.84.0", "1.85.0", "1.86.0"} {
		if have[v] == 0 {
			t.Errorf("no notes for v%s", v)
		}
	}
}

func TestNotes_Validate(t *testing.T) {
	for _, bad := range []string{
		"- {id: v1.0.0-x, version: 1.0.0, title: t, summary: s, anchor: a, applies: [nobody], kind: info}",
		"- {id: v1.0.0-x, version: 1.0.0, title: t, summary: s, anchor: a, applies: [everyone], kind: maybe}",
		"- {id: v2.0.0-x, version: 1.0.0, title: t, summary: s, anchor: a, applies: [everyone], kind: info}",
		"- {id: v1.0.0-x, version: one, title: t, summary: s, anchor: a, applies: [everyone], kind: info}",
		"- {id: v1.0.0-x, version: 1.0.0, title: t, summary: s, anchor: a, applies: [everyone], kind: info}\n- {id: v1.0.0-x, version: 1.0.0, title: t, summary: s, anchor: a, applies: [everyone], kind: info}",
	} {
		if _, err := ParseNotes([]byte(bad)); err == nil {
			t.Errorf("accepted %s", bad)
		}
	}
}

func FuzzParseNotes(f *testing.F) {
	f.Add(notesYAML)
	f.Add([]byte("- {id: v1.0.0-x, version: 1.0.0, title: t, summary: s, anchor: a, applies: [everyone], kind: info}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ns, err := ParseNotes(data)
		if err != nil {
			return
		}
		for _, n := range ns {
			if n.SemVer() == nil || n.Kind == "" {
				t.Fatalf("accepted an invalid note %+v", n)
			}
		}
	})
}

// specTable reads a markdown table of the spec section starting at heading.
func specTable(t *testing.T, heading string) [][]string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(shared, "reference", "synapse-tooling-spec.md"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	i := strings.Index(s, heading)
	if i < 0 {
		t.Fatalf("no %q in the spec", heading)
	}
	var rows [][]string
	for _, line := range strings.Split(s[i:], "\n")[1:] {
		if strings.HasPrefix(line, "#") {
			break
		}
		if !strings.HasPrefix(line, "| v") {
			continue
		}
		var cells []string
		for _, c := range strings.Split(strings.Trim(line, "|"), "|") {
			cells = append(cells, strings.TrimSpace(c))
		}
		rows = append(rows, cells)
	}
	return rows
}

func TestSchemaFacts_MatchTheSpec(t *testing.T) {
	rows := specTable(t, "### 6.1")
	if len(rows) != 99 {
		t.Fatalf("spec 6.1 has %d rows", len(rows))
	}
	for _, r := range rows {
		v, _ := semver.NewVersion(r[0])
		f, ok := FactFor(v)
		compat := "—"
		if f.Compat != 0 {
			compat = itoa(f.Compat)
		}
		if !ok || itoa(f.Schema) != r[1] || compat != r[2] {
			t.Errorf("%s: got %d/%s, spec says %s/%s", r[0], f.Schema, compat, r[1], r[2])
		}
	}
}

func TestRollbackTable_ReproducesTheSpec(t *testing.T) {
	want := specTable(t, "### 6.2")
	got := RollbackTable()
	if len(got) != len(want) {
		t.Fatalf("got %d rows, the spec has %d", len(got), len(want))
	}
	for i, row := range got {
		g := row.From.Tag() + " – " + row.To.Tag() + " | " + row.Compatible.Tag()
		w := want[i][0] + " | " + want[i][1]
		if g != w {
			t.Errorf("row %d: got %q, want %q", i, g, w)
		}
	}
}

func TestRollbackFloor(t *testing.T) {
	for v, want := range map[string]string{"1.80.0": "v1.68.0", "1.98.0": "v1.96.0", "1.60.0": "v1.57.0", "1.62.1": "v1.61.0"} {
		sv, _ := ParseVersion(v)
		got, ok := RollbackFloor(sv)
		if !ok || got.Tag() != want {
			t.Errorf("floor of %s: got %s, want %s", v, got.Tag(), want)
		}
	}
}

func TestFloors(t *testing.T) {
	v, _ := ParseVersion("1.80.0")
	if pg, since := FloorFor(v, "postgres"); pg.String() != "11.0.0" || since.String() != "1.72.0" {
		t.Errorf("postgres floor of 1.80: %v since %v", pg, since)
	}
	if sq, _ := FloorFor(v, "sqlite"); sq.String() != "3.27.0" {
		t.Errorf("sqlite floor of 1.80: %v", sq)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestRunsOn: a release runs on a database it brought to its schema
// version and whose compat version it raised to its own, or on one a newer
// release it can roll back from left.
func TestRunsOn(t *testing.T) {
	fact := func(v string) SchemaFact {
		f, ok := FactFor(semver.MustParse(v))
		if !ok {
			t.Fatalf("no facts for %s", v)
		}
		return f
	}
	for _, tc := range []struct {
		release        string
		schema, compat int
		want           bool
	}{
		{"1.98.0", 83, 83, true},
		{"1.96.0", 83, 83, true},  // rolled back from v1.98.0
		{"1.96.0", 83, 80, true},  // its own
		{"1.96.0", 69, 69, false}, // it would have upgraded the database
		{"1.80.0", 83, 83, false}, // compat 83 is above its schema 74
		{"1.98.0", 83, 80, false}, // it would have raised compat to 83
		{"1.98.0", 90, 83, true},  // rolled back from a later release
		{"1.98.0", 90, 88, false},
		{"1.57.0", 69, 69, true},
		{"1.20.0", 58, 0, true}, // before compat versions
		{"1.20.0", 59, 0, false},
	} {
		if got := RunsOn(fact(tc.release), tc.schema, tc.compat); got != tc.want {
			t.Errorf("RunsOn(v%s, schema %d, compat %d) = %v, want %v", tc.release, tc.schema, tc.compat, got, tc.want)
		}
	}
	for v, want := range map[string]string{"1.96.0": "80-83", "1.98.0": "83", "1.20.0": "schema 58"} {
		if got := fact(v).Span(); got != want {
			t.Errorf("v%s spans %q, want %q", v, got, want)
		}
	}
}
