package rollback

import (
	"context"
	"database/sql"
	_ "embed"
	"fmt"
	"strings"
	"sync"

	"github.com/Masterminds/semver/v3"
	"gopkg.in/yaml.v3"

	"hsops/internal/db"
	"hsops/internal/fault"
	"hsops/internal/releases"
	"hsops/schema"
)

//go:embed synapse_recipes.yaml
var recipesYAML []byte

// Recipe is a rollback of a Synapse database that Synapse's upgrade notes
// document.
type Recipe struct {
	Name       string       `yaml:"name" json:"name"`
	Anchor     string       `yaml:"anchor" json:"-"`
	FromSchema int          `yaml:"from_schema" json:"from_schema"`
	ToSchema   int          `yaml:"to_schema" json:"to_schema"`
	Targets    string       `yaml:"targets" json:"targets"`
	Steps      []RecipeStep `yaml:"steps" json:"steps,omitempty"`
	Advice     []string     `yaml:"advice" json:"advice,omitempty"`
	targets    *semver.Constraints
}

// URL is the recipe's section of the upgrade notes.
func (r Recipe) URL() string { return releases.UpgradePage + "#" + r.Anchor }

// RecipeStep is one step of a recipe: SQL for both engines, then for one.
type RecipeStep struct {
	Say      string `yaml:"say" json:"say"`
	SQL      string `yaml:"sql" json:"-"`
	Postgres string `yaml:"postgres" json:"-"`
	SQLite   string `yaml:"sqlite" json:"-"`
}

// Statements are the step's SQL statements on an engine, in order.
func (s RecipeStep) Statements(e db.Engine) []string {
	text := s.SQL
	if e == db.Postgres {
		text += "\n" + s.Postgres
	} else {
		text += "\n" + s.SQLite
	}
	var out []string
	for _, stmt := range strings.Split(text, ";") {
		if stmt = strings.TrimSpace(stmt); stmt != "" {
			out = append(out, stmt+";")
		}
	}
	return out
}

var (
	recipesOnce sync.Once
	recipes     []Recipe
	recipesErr  error
)

// ParseRecipes reads recipes from YAML.
func ParseRecipes(data []byte) ([]Recipe, error) {
	var out []Recipe
	if err := yaml.Unmarshal(data, &out); err != nil {
		return nil, fmt.Errorf("recipes: %w", err)
	}
	for i := range out {
		r := &out[i]
		c, err := semver.NewConstraint(r.Targets)
		if err != nil {
			return nil, fmt.Errorf("recipe %q: targets: %w", r.Name, err)
		}
		r.targets = c
		if r.ToSchema > r.FromSchema || (r.ToSchema == r.FromSchema && len(r.Steps) > 0) {
			return nil, fmt.Errorf("recipe %q: from_schema %d to_schema %d", r.Name, r.FromSchema, r.ToSchema)
		}
	}
	return out, nil
}

// Recipes returns the embedded recipes.
func Recipes() []Recipe {
	recipesOnce.Do(func() { recipes, recipesErr = ParseRecipes(recipesYAML) })
	if recipesErr != nil {
		panic("embedded recipes: " + recipesErr.Error())
	}
	return recipes
}

// SynapsePlan is the rollback of a Synapse database to a release.
type SynapsePlan struct {
	Engine  db.Engine
	State   *schema.State
	Release *semver.Version
	Fact    releases.SchemaFact
	// AsIs is true when the release accepts the database unchanged.
	AsIs bool
	// Recipes run in order; Advice recipes only have advice.
	Recipes []Recipe
	Advice  []Recipe
}

// ErrNoRecipe means no documented recipe takes the database to the release.
var ErrNoRecipe = fault.New(fault.NotOurs, "no documented rollback",
	"nothing was changed: restore the backup taken before the upgrade, or run a release that accepts the database")

// PlanSynapse works out how a Synapse database in state st reaches the
// release: unchanged when the release accepts it (compat versions), else
// through the chain of documented recipes from its schema version down to
// the release's.
func PlanSynapse(st *schema.State, e db.Engine, release *semver.Version) (*SynapsePlan, error) {
	f, ok := releases.FactFor(release)
	if !ok {
		return nil, fmt.Errorf("%w: v%s is not a release the tools know (they know v1.0.0 to %s)", schema.ErrBadTarget, release, releases.SchemaFacts()[len(releases.SchemaFacts())-1].Tag())
	}
	p := &SynapsePlan{Engine: e, State: st, Release: release, Fact: f}
	compat := 0
	if st.HasCompat {
		compat = st.Compat
	}
	for _, r := range Recipes() {
		if r.FromSchema == r.ToSchema && r.FromSchema == st.Version && r.targets.Check(release) {
			p.Advice = append(p.Advice, r)
		}
	}
	if releases.CanRun(f, st.Version, compat) {
		p.AsIs = true
		return p, nil
	}
	cur := st.Version
	for cur > f.Schema {
		var next *Recipe
		for _, r := range Recipes() {
			if r.FromSchema == cur && r.ToSchema < cur && r.ToSchema >= f.Schema {
				r := r
				next = &r
				break
			}
		}
		if next == nil {
			return nil, fmt.Errorf("%w takes a Synapse database from schema %d to v%s (schema %d): Synapse's upgrade notes document rollbacks only from v1.26.0 to v1.25.0, v1.13.0 to v1.12.4 and v1.4.0 to v1.3.1",
				ErrNoRecipe, cur, release, f.Schema)
		}
		p.Recipes = append(p.Recipes, *next)
		cur = next.ToSchema
	}
	if len(p.Recipes) == 0 {
		// Compat above the schema version: no release at the target's
		// schema accepts it, and no recipe lowers a compat version.
		return nil, fmt.Errorf("%w takes a Synapse database at schema %d, compat %d, to v%s (schema %d)", ErrNoRecipe, st.Version, compat, release, f.Schema)
	}
	if last := p.Recipes[len(p.Recipes)-1]; !last.targets.Check(release) {
		return nil, fmt.Errorf("%w: %s reaches schema %d for releases %s, not v%s", ErrNoRecipe, last.Name, last.ToSchema, last.Targets, release)
	}
	return p, nil
}

// ApplySynapse runs a plan's recipes under the schema lock, in one
// transaction, after checking that the database is still where the plan
// found it; with backupPath (SQLite) the database is copied there first,
// under the lock.
func ApplySynapse(ctx context.Context, d *db.DB, p *SynapsePlan, holder, backupPath string) error {
	if p.AsIs || len(p.Recipes) == 0 {
		return nil
	}
	lock, err := schema.AcquireLock(ctx, d, holder)
	if err != nil {
		return err
	}
	defer lock.Release()
	st, err := schema.ReadState(ctx, d, d.DB)
	if err != nil {
		return err
	}
	if st.Version != p.State.Version {
		return fmt.Errorf("%w: it was at schema %d, it is at %d", ErrMoved, p.State.Version, st.Version)
	}
	if backupPath != "" {
		if err := BackupSQLite(ctx, d, backupPath); err != nil {
			return err
		}
	}
	return schema.InTx(ctx, d, func(tx *sql.Tx) error {
		if now, err := schema.ReadState(ctx, d, tx); err != nil || now.Version != st.Version {
			if err == nil {
				err = fmt.Errorf("%w: it was at schema %d, it is at %d", ErrMoved, st.Version, now.Version)
			}
			return err
		}
		for _, r := range p.Recipes {
			for _, step := range r.Steps {
				for _, stmt := range step.Statements(d.Engine) {
					if _, err := tx.ExecContext(ctx, stmt); err != nil {
						return &RecipeError{Recipe: r.Name, Statement: stmt, Err: err}
					}
				}
			}
		}
		return nil
	})
}

// RecipeError reports a recipe statement that failed; nothing was changed.
type RecipeError struct {
	Recipe    string
	Statement string
	Err       error
}

func (e *RecipeError) Error() string {
	return fmt.Sprintf("recipe %s: %s: %v", e.Recipe, e.Statement, e.Err)
}

func (e *RecipeError) Unwrap() error { return e.Err }

// Class is a failed delta's: the recipe was undone.
func (e *RecipeError) Class() fault.Class { return fault.Delta }

// Hint says what was left.
func (e *RecipeError) Hint() string {
	return "nothing was changed: the recipe ran in one transaction and was undone"
}
