package releases

import (
	_ "embed"
	"fmt"
	"regexp"
	"sort"
	"sync"

	"github.com/Masterminds/semver/v3"
	"gopkg.in/yaml.v3"
)

//go:embed data/notes.yaml
var notesYAML []byte

// UpgradePage is where the notes' anchors point.
const UpgradePage = "https://element-hq.github.io/synapse/latest/upgrade.html"

// Note is one upgrade note (see data/notes.yaml for the schema).
type Note struct {
	ID      string   `yaml:"id" json:"id"`
	Version string   `yaml:"version" json:"version"`
	Title   string   `yaml:"title" json:"title"`
	Summary string   `yaml:"summary" json:"summary"`
	Anchor  string   `yaml:"anchor" json:"-"`
	Applies []string `yaml:"applies" json:"applies"`
	Kind    string   `yaml:"kind" json:"kind"`
	Check   string   `yaml:"check,omitempty" json:"check,omitempty"`

	version *semver.Version
}

// URL links to the note's section of Synapse's upgrade page.
func (n Note) URL() string { return UpgradePage + "#" + n.Anchor }

// SemVer is the note's release version.
func (n Note) SemVer() *semver.Version { return n.version }

// The vocabularies of the notes data.
var (
	Kinds     = []string{"action", "breaking", "deprecation", "info", "rollback"}
	Audiences = []string{"everyone", "workers", "postgres", "sqlite", "appservices", "modules", "source", "packages",
		"sso", "metrics", "email", "templates", "admin-api", "clients", "reverse-proxy", "federation", "registration"}
)

var idRE = regexp.MustCompile(`^v\d+\.\d+\.\d+-[a-z0-9.-]+$`)

// ParseNotes reads and validates notes data.
func ParseNotes(data []byte) ([]Note, error) {
	var notes []Note
	if err := yaml.Unmarshal(data, &notes); err != nil {
		return nil, fmt.Errorf("notes data: %w", err)
	}
	in := func(v string, set []string) bool {
		for _, s := range set {
			if s == v {
				return true
			}
		}
		return false
	}
	ids := map[string]bool{}
	for i := range notes {
		n := &notes[i]
		where := fmt.Sprintf("note %d (%s)", i+1, n.ID)
		v, err := ParseVersion(n.Version)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		n.version = v
		switch {
		case !idRE.MatchString(n.ID):
			return nil, fmt.Errorf("%s: id must look like v1.2.3-some-words", where)
		case ids[n.ID]:
			return nil, fmt.Errorf("%s: duplicate id", where)
		case n.ID[1:len(v.String())+1] != v.String():
			return nil, fmt.Errorf("%s: id does not start with its version %s", where, v)
		case n.Title == "" || n.Summary == "" || n.Anchor == "":
			return nil, fmt.Errorf("%s: title, summary and anchor are required", where)
		case !in(n.Kind, Kinds):
			return nil, fmt.Errorf("%s: kind %q is not one of %v", where, n.Kind, Kinds)
		case len(n.Applies) == 0:
			return nil, fmt.Errorf("%s: applies is empty", where)
		}
		for _, a := range n.Applies {
			if !in(a, Audiences) {
				return nil, fmt.Errorf("%s: audience %q is not one of %v", where, a, Audiences)
			}
		}
		ids[n.ID] = true
	}
	sort.SliceStable(notes, func(i, j int) bool { return notes[i].version.LessThan(notes[j].version) })
	return notes, nil
}

var (
	notesOnce sync.Once
	notes     []Note
	notesErr  error
)

// Notes returns every upgrade note, oldest release first.
func Notes() []Note {
	notesOnce.Do(func() { notes, notesErr = ParseNotes(notesYAML) })
	if notesErr != nil {
		panic(notesErr.Error())
	}
	return notes
}

// Between returns the notes of the releases from from to to, both
// included (a nil from means from the beginning). The installed release's
// own notes are included: when it was installed they were the ones to
// follow, and they are the ones most often skipped.
func Between(from, to *semver.Version) []Note {
	var out []Note
	for _, n := range Notes() {
		if (from == nil || !n.version.LessThan(from)) && !to.LessThan(n.version) {
			out = append(out, n)
		}
	}
	return out
}

// Newest is the newest release with notes in the data.
func Newest() *semver.Version {
	ns := Notes()
	return ns[len(ns)-1].version
}
