package releases

import (
	"bufio"
	"bytes"
	_ "embed"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/Masterminds/semver/v3"
)

//go:embed data/releases.tsv
var releasesTSV []byte

//go:embed data/floors.tsv
var floorsTSV []byte

// Release is one Synapse release with its schema facts.
type Release struct {
	Version *semver.Version
	// Date is YYYY-MM-DD where known, "" otherwise.
	Date string
	// RC marks release candidates.
	RC     bool
	Schema int
	Compat int
}

// Tag renders the release as "v1.98.0".
func (r Release) Tag() string { return "v" + r.Version.String() }

// Key is what decides rollback compatibility (compat, or schema before
// compat versions existed).
func (r Release) Key() int {
	if r.Compat != 0 {
		return r.Compat
	}
	return r.Schema
}

var (
	relOnce sync.Once
	rels    []Release
	relErr  error
)

// ParseVersion reads a release version: "1.98.0", "v1.98.0", "1.98" and
// "v1.98.0rc1" are accepted.
func ParseVersion(s string) (*semver.Version, error) {
	s = strings.TrimSpace(s)
	if i := strings.Index(s, "rc"); i > 0 && s[i-1] != '-' {
		s = s[:i] + "-" + s[i:]
	}
	v, err := semver.NewVersion(s)
	if err != nil {
		return nil, fmt.Errorf("%q is not a release version (want e.g. 1.98.0)", s)
	}
	return v, nil
}

// All returns every known release, oldest first: the X.Y.0 releases of the
// schema facts and the patch releases listed in the data.
func All() []Release {
	relOnce.Do(func() { rels, relErr = buildReleases() })
	if relErr != nil {
		panic("embedded release facts: " + relErr.Error())
	}
	return rels
}

func buildReleases() ([]Release, error) {
	seen := map[string]bool{}
	var out []Release
	for _, f := range SchemaFacts() {
		out = append(out, Release{Version: f.Version, Schema: f.Schema, Compat: f.Compat})
		seen[f.Version.String()] = true
	}
	sc := bufio.NewScanner(bytes.NewReader(releasesTSV))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Split(line, "\t")
		if len(f) != 3 {
			return nil, fmt.Errorf("releases line %d: want 3 fields", n)
		}
		v, err := ParseVersion(f[0])
		if err != nil {
			return nil, fmt.Errorf("releases line %d: %w", n, err)
		}
		date := f[1]
		if date == "-" {
			date = ""
		}
		if seen[v.String()] {
			for i := range out {
				if out[i].Version.Equal(v) {
					out[i].Date = date
				}
			}
			continue
		}
		fact, ok := FactFor(v)
		if !ok {
			return nil, fmt.Errorf("releases line %d: no schema facts for the %d.%d series", n, v.Major(), v.Minor())
		}
		out = append(out, Release{Version: v, Date: date, RC: f[2] == "rc", Schema: fact.Schema, Compat: fact.Compat})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version.LessThan(out[j].Version) })
	return out, sc.Err()
}

// Find returns the release with that version, or the facts of its series
// for a patch release that is not listed.
func Find(v *semver.Version) (Release, bool) {
	for _, r := range All() {
		if r.Version.Equal(v) {
			return r, true
		}
	}
	f, ok := FactFor(v)
	if !ok {
		return Release{}, false
	}
	return Release{Version: v, Schema: f.Schema, Compat: f.Compat}, true
}

// RollbackRange is a row of Synapse's rollback-compatibility table: the
// releases From to To can be rolled back to Compatible without database
// changes.
type RollbackRange struct {
	From, To, Compatible Release
}

// RollbackTable computes the table as Synapse's docs build does
// (scripts-dev/schema_versions.py): releases grouped by their compat
// version (schema version before compat versions existed); each group's
// compatible release is the first whose schema version equals the key.
func RollbackTable() []RollbackRange {
	var out []RollbackRange
	index := map[int]int{}
	all := All()
	for _, r := range all {
		if r.RC {
			continue
		}
		k := r.Key()
		if i, ok := index[k]; ok {
			out[i].To = r
			continue
		}
		row := RollbackRange{From: r, To: r}
		for _, c := range all {
			if !c.RC && c.Schema == k {
				row.Compatible = c
				break
			}
		}
		index[k] = len(out)
		out = append(out, row)
	}
	return out
}

// RollbackFloor returns the oldest release a deployment on v can roll back
// to without database changes.
func RollbackFloor(v *semver.Version) (Release, bool) {
	r, ok := Find(v)
	if !ok {
		return Release{}, false
	}
	for _, row := range RollbackTable() {
		if row.From.Key() == r.Key() && row.Compatible.Version != nil {
			return row.Compatible, true
		}
	}
	return Release{}, false
}

// Floor is a platform requirement from a release on.
type Floor struct {
	Release   *semver.Version
	Component string
	Minimum   *semver.Version
	Note      string
}

var (
	floorOnce sync.Once
	floors    []Floor
	floorErr  error
)

// Floors returns the platform floors, oldest release first.
func Floors() []Floor {
	floorOnce.Do(func() {
		sc := bufio.NewScanner(bytes.NewReader(floorsTSV))
		for n := 1; sc.Scan(); n++ {
			line := strings.TrimSpace(sc.Text())
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			f := strings.Split(line, "\t")
			if len(f) != 4 {
				floorErr = fmt.Errorf("floors line %d: want 4 fields", n)
				return
			}
			rel, err := ParseVersion(f[0])
			if err != nil {
				floorErr = err
				return
			}
			min, err := semver.NewVersion(f[2])
			if err != nil {
				floorErr = fmt.Errorf("floors line %d: %w", n, err)
				return
			}
			floors = append(floors, Floor{Release: rel, Component: f[1], Minimum: min, Note: f[3]})
		}
	})
	if floorErr != nil {
		panic("embedded floors: " + floorErr.Error())
	}
	return floors
}

// FloorFor returns the minimum version of a component that release v
// requires ("" when none is known).
func FloorFor(v *semver.Version, component string) (*semver.Version, *semver.Version) {
	var best *semver.Version
	var since *semver.Version
	for _, f := range Floors() {
		if f.Component == component && !v.LessThan(f.Release) {
			best, since = f.Minimum, f.Release
		}
	}
	return best, since
}
