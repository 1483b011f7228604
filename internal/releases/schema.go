// Package releases holds the facts about Synapse releases that the tools
// reason with: every release and its date, the schema and compat versions of
// each vX.Y.0 release, the rollback-compatibility ranges derived from them,
// the platform floors, and the upgrade notes as data.
package releases

import (
	"bufio"
	"bytes"
	_ "embed"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/Masterminds/semver/v3"
)

//go:embed data/schema_versions.tsv
var schemaVersionsTSV []byte

// SchemaFact is the schema and compat version of one vX.Y.0 release.
type SchemaFact struct {
	Version *semver.Version
	Schema  int
	// Compat is 0 for releases before v1.37.0, which had no compat version
	// (a database was refused only when its schema version was newer).
	Compat int
}

// Tag renders the release as "v1.98.0".
func (f SchemaFact) Tag() string { return "v" + f.Version.String() }

// Key is what decides rollback compatibility: the compat version, or the
// schema version for releases that had none.
func (f SchemaFact) Key() int {
	if f.Compat != 0 {
		return f.Compat
	}
	return f.Schema
}

var (
	schemaOnce  sync.Once
	schemaFacts []SchemaFact
	schemaErr   error
)

// ParseSchemaFacts reads the tab-separated schema facts.
func ParseSchemaFacts(data []byte) ([]SchemaFact, error) {
	var out []SchemaFact
	sc := bufio.NewScanner(bytes.NewReader(data))
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Split(line, "\t")
		if len(f) != 3 {
			return nil, fmt.Errorf("schema facts line %d: want 3 tab-separated fields, got %d", n, len(f))
		}
		v, err := semver.NewVersion(f[0])
		if err != nil {
			return nil, fmt.Errorf("schema facts line %d: %w", n, err)
		}
		sv, err := strconv.Atoi(f[1])
		if err != nil {
			return nil, fmt.Errorf("schema facts line %d: schema version: %w", n, err)
		}
		cv := 0
		if f[2] != "-" {
			if cv, err = strconv.Atoi(f[2]); err != nil {
				return nil, fmt.Errorf("schema facts line %d: compat version: %w", n, err)
			}
		}
		out = append(out, SchemaFact{Version: v, Schema: sv, Compat: cv})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version.LessThan(out[j].Version) })
	return out, sc.Err()
}

// SchemaFacts returns the embedded facts, oldest release first.
func SchemaFacts() []SchemaFact {
	schemaOnce.Do(func() { schemaFacts, schemaErr = ParseSchemaFacts(schemaVersionsTSV) })
	if schemaErr != nil {
		panic("embedded schema facts: " + schemaErr.Error())
	}
	return schemaFacts
}

// FactFor returns the facts of the X.Y.0 release of v's minor series.
func FactFor(v *semver.Version) (SchemaFact, bool) {
	for _, f := range SchemaFacts() {
		if f.Version.Major() == v.Major() && f.Version.Minor() == v.Minor() {
			return f, true
		}
	}
	return SchemaFact{}, false
}

// Matching returns the releases whose schema and compat versions are those
// of a database, i.e. the releases that could have left it in that state.
// When none matches both, the releases with that schema version are given.
func Matching(schema, compat int) []SchemaFact {
	var both, sameSchema []SchemaFact
	for _, f := range SchemaFacts() {
		if f.Schema != schema {
			continue
		}
		sameSchema = append(sameSchema, f)
		if f.Compat == compat {
			both = append(both, f)
		}
	}
	if len(both) > 0 {
		return both
	}
	return sameSchema
}

// CanRun reports whether a release accepts a database with the given schema
// and compat versions: its schema version is at least the compat version
// (or, for releases without compat, at least the schema version).
func CanRun(f SchemaFact, schema, compat int) bool {
	if f.Compat == 0 {
		return f.Schema >= schema
	}
	if compat == 0 {
		return f.Schema >= schema
	}
	return f.Schema >= compat
}

// RunsOn reports whether a database with the given schema and compat
// versions can be one that release f runs on. At start a release brings the
// database up to its schema version (a newer one, left by a release it can
// roll back from, stays) and raises the compat version to its own, never
// lowering it: f.Compat <= compat <= f.Schema <= schema. Releases before
// compat versions refused a newer schema, so schema is f.Schema.
func RunsOn(f SchemaFact, schema, compat int) bool {
	if f.Compat == 0 {
		return schema == f.Schema
	}
	return f.Compat <= compat && compat <= f.Schema && f.Schema <= schema
}

// Span says which databases a release runs on, as RunsOn decides: "80-83"
// (compat 80 to schema 83), "83" (compat and schema 83), "schema 58" (a
// release before compat versions).
func (f SchemaFact) Span() string {
	switch f.Compat {
	case 0:
		return fmt.Sprintf("schema %d", f.Schema)
	case f.Schema:
		return fmt.Sprint(f.Schema)
	}
	return fmt.Sprintf("%d-%d", f.Compat, f.Schema)
}

// NewestFact is the newest release the schema facts know.
func NewestFact() SchemaFact {
	fs := SchemaFacts()
	return fs[len(fs)-1]
}

// OldestCanRun returns the oldest release that accepts the database.
func OldestCanRun(schema, compat int) (SchemaFact, bool) {
	for _, f := range SchemaFacts() {
		if CanRun(f, schema, compat) {
			return f, true
		}
	}
	return SchemaFact{}, false
}

// Series renders a list of releases compactly: "v1.96.0-v1.98.0".
func Series(fs []SchemaFact) string {
	switch len(fs) {
	case 0:
		return ""
	case 1:
		return fs[0].Tag()
	}
	return fs[0].Tag() + "-" + fs[len(fs)-1].Tag()
}
