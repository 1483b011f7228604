package rollback

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"hsops/internal/db"
	"hsops/internal/fault"
	"hsops/internal/plural"
	"hsops/schema"
)

// Options control planning and applying a rollback.
type Options struct {
	// Target is the schema version to roll back to.
	Target int
	// Stores are the logical databases hosted here; nil means main and state.
	Stores []string
	// AllowDataLoss lets the rollback destroy data (declared losses with
	// rows, reverses that cannot give back what their delta took).
	AllowDataLoss bool
	// ServerName is passed to Go reverses.
	ServerName string
	// Holder describes this process to another one that finds the schema
	// lock taken.
	Holder string
	// BackupPath, for SQLite, is where a copy of the database is written
	// before anything changes. Empty means no copy.
	BackupPath string
}

func (o Options) stores() []string {
	if len(o.Stores) == 0 {
		return schema.Stores
	}
	return o.Stores
}

// Step is the reverses of one schema version, newest delta first.
type Step struct {
	Version  int
	Reverses []Reverse
}

// Count is declared data with what the database holds of it.
type Count struct {
	Data
	// Delta is the delta whose reverse declares it.
	Delta string `json:"delta"`
	// Rows is the number of rows (for a column: of non-NULL values)
	// concerned; -1 when the table or column is not there.
	Rows int64 `json:"rows"`
}

// Irreversible is a reverse that cannot give back what its delta took.
type Irreversible struct {
	Delta string `json:"delta"`
	Why   string `json:"why"`
	// Affects is what it loses, counted (nil when the reverse does not
	// declare it: then it always loses something).
	Affects *Count `json:"affects,omitempty"`
}

// Loses reports whether the irreversible reverse loses anything in this
// database.
func (i Irreversible) Loses() bool { return i.Affects == nil || i.Affects.Rows > 0 }

// Plan is everything a rollback will do, worked out before any write.
type Plan struct {
	Engine db.Engine
	Stores []string
	State  *schema.State
	From   int
	Target int
	// CompatAfter is the compat version a fresh database at Target has.
	CompatAfter int
	// UpgradedAfter is schema_version.upgraded after the rollback: false
	// when everything up to Target counts as created rather than applied.
	UpgradedAfter bool
	// CreatedAfter is the engine mark's created_version after the rollback.
	CreatedAfter int
	Steps        []Step
	// RemoveApplied are the applied_schema_deltas entries removed.
	RemoveApplied []string
	// Dequeued are pending background updates the reverses remove;
	// Requeued the ones they queue again.
	Dequeued []string
	Requeued []string
	Loses    []Count
	Drops    []Count
	Keeps    []Count
	Restores []Count
	// Irreversible lists the reverses that cannot give back what their
	// delta took.
	Irreversible []Irreversible
	// Note explains a plan with nothing to do.
	Note string
}

// Empty reports whether the plan changes nothing.
func (p *Plan) Empty() bool { return p.From == p.Target }

// ReverseCount is the number of reverses the plan runs.
func (p *Plan) ReverseCount() int {
	n := 0
	for _, s := range p.Steps {
		n += len(s.Reverses)
	}
	return n
}

// Lost lists the declared losses that hold data.
func (p *Plan) Lost() []Count {
	var out []Count
	for _, c := range p.Loses {
		if c.Rows > 0 {
			out = append(out, c)
		}
	}
	return out
}

// NothingLost lists the declared losses that hold nothing here.
func (p *Plan) NothingLost() []Count {
	var out []Count
	for _, c := range p.Loses {
		if c.Rows <= 0 {
			out = append(out, c)
		}
	}
	return out
}

// Unrecoverable lists the irreversible reverses that lose something here.
func (p *Plan) Unrecoverable() []Irreversible {
	var out []Irreversible
	for _, i := range p.Irreversible {
		if i.Loses() {
			out = append(out, i)
		}
	}
	return out
}

// ErrDataLoss means the rollback would destroy data or run a reverse that
// cannot give back what its delta took, and data loss was not allowed.
var ErrDataLoss = fault.New(fault.DataLoss, "the rollback would lose data",
	"nothing was changed: the plan (--dry-run) lists the data; add --allow-data-loss to roll back anyway")

// DataLossError lists what a refused rollback would have lost.
type DataLossError struct {
	Lost         []Count
	Irreversible []Irreversible
}

func (e *DataLossError) Error() string {
	var parts []string
	for _, c := range e.Lost {
		parts = append(parts, fmt.Sprintf("%s (%s)", c.String(), plural.Count(c.Rows, "row")))
	}
	for _, i := range e.Irreversible {
		what := i.Delta + " cannot be undone"
		if i.Affects != nil {
			what += fmt.Sprintf(" (%s: %s)", i.Affects.String(), plural.Count(i.Affects.Rows, "row"))
		}
		parts = append(parts, what)
	}
	return fmt.Sprintf("%v: %s", ErrDataLoss, strings.Join(parts, "; "))
}

// Is makes errors.Is(err, ErrDataLoss) true.
func (e *DataLossError) Is(target error) bool { return target == ErrDataLoss }

// Class is ErrDataLoss's.
func (e *DataLossError) Class() fault.Class { return fault.DataLoss }

// Hint is ErrDataLoss's.
func (e *DataLossError) Hint() string { return ErrDataLoss.Hint() }

// Refusal returns the error that stops the plan when data loss is not
// allowed, or nil.
func (p *Plan) Refusal() error {
	lost, gone := p.Lost(), p.Unrecoverable()
	if len(lost) == 0 && len(gone) == 0 {
		return nil
	}
	return &DataLossError{Lost: lost, Irreversible: gone}
}

// Plan works out the rollback of a database in state st to opts.Target.
// Counts of the data concerned are read through q (the transaction that
// will run the plan, or the database for a dry run).
func (s *Set) Plan(ctx context.Context, d *db.DB, q db.Querier, st *schema.State, opts Options) (*Plan, error) {
	switch st.Kind {
	case schema.KindSynapse:
		return nil, fmt.Errorf("%w: this is a Synapse database (schema %d): only the rollbacks Synapse documents apply to it (use --to-release)", schema.ErrNotEngine, st.Version)
	case schema.KindEmpty, schema.KindUnknown:
		return nil, fmt.Errorf("%w: it has no schema_version", schema.ErrNotHomeserver)
	}
	set := s.Schema
	if st.Version > set.Version {
		return nil, set.Newer(st)
	}
	target := opts.Target
	if target < set.Oldest || target > st.Version {
		return nil, fmt.Errorf("%w: %d (a rollback goes from the database's schema %d down to %d at the lowest)", schema.ErrBadTarget, target, st.Version, set.Oldest)
	}
	created := 0
	if st.Mark != nil {
		created = st.Mark.CreatedVersion
	}
	p := &Plan{
		Engine: d.Engine, Stores: opts.stores(), State: st, From: st.Version, Target: target,
		CompatAfter: set.CompatFor(target), CreatedAfter: min(created, target),
	}
	p.UpgradedAfter = target > p.CreatedAfter
	if target == st.Version {
		p.Note = fmt.Sprintf("the database is at schema %d already: nothing to do", target)
		return p, nil
	}
	applied := func(dl schema.Delta) bool { return st.IsApplied(dl.Key()) || dl.Version <= created }
	pending, queued := map[string]bool{}, map[string]bool{}
	for _, u := range st.Updates {
		pending[u.Name], queued[u.Name] = true, true
	}
	seen := map[string]bool{}
	for v := st.Version; v > target; v-- {
		deltas, err := set.Deltas(v, p.Stores, d.Engine)
		if err != nil {
			return nil, err
		}
		step := Step{Version: v}
		for i := len(deltas) - 1; i >= 0; i-- {
			dl := deltas[i]
			if !applied(dl) {
				continue
			}
			r, err := s.Lookup(dl, d.Engine)
			if err != nil {
				return nil, err
			}
			step.Reverses = append(step.Reverses, r)
			if err := p.account(ctx, d, q, r, seen, queued); err != nil {
				return nil, err
			}
		}
		if len(step.Reverses) > 0 {
			p.Steps = append(p.Steps, step)
		}
	}
	for name := range pending {
		if !queued[name] {
			p.Dequeued = append(p.Dequeued, name)
		}
	}
	for name := range queued {
		if !pending[name] {
			p.Requeued = append(p.Requeued, name)
		}
	}
	sort.Strings(p.Dequeued)
	sort.Strings(p.Requeued)
	p.Keeps = withoutRemoved(p.Keeps, append(append([]Count{}, p.Loses...), p.Drops...))
	for _, key := range st.Applied {
		if v, ok := keyVersion(key); ok && v > target {
			p.RemoveApplied = append(p.RemoveApplied, key)
		}
	}
	return p, nil
}

// account adds a reverse's declarations, with counts, to the plan.
// queued tracks the background updates queued as the reverses run.
func (p *Plan) account(ctx context.Context, d *db.DB, q db.Querier, r Reverse, seen, queued map[string]bool) error {
	key := r.Delta.Key()
	add := func(list *[]Count, kind string, data []Data, count bool) error {
		for _, dt := range data {
			id := kind + " " + dt.Kind + " " + dt.String()
			if seen[id] {
				continue
			}
			seen[id] = true
			c := Count{Data: dt, Delta: key, Rows: -1}
			if count {
				n, err := countData(ctx, d, q, dt)
				if err != nil {
					return fmt.Errorf("count %s for %s: %w", dt.String(), key, err)
				}
				c.Rows = n
			}
			*list = append(*list, c)
		}
		return nil
	}
	if err := add(&p.Loses, "loses", r.Decl.Loses, true); err != nil {
		return err
	}
	if err := add(&p.Drops, "drops", r.Decl.Drops, true); err != nil {
		return err
	}
	if err := add(&p.Keeps, "keeps", r.Decl.Keeps, false); err != nil {
		return err
	}
	if err := add(&p.Restores, "restores", r.Decl.RestoresEmpty, false); err != nil {
		return err
	}
	if r.Decl.Irreversible != "" {
		ir := Irreversible{Delta: key, Why: r.Decl.Irreversible}
		if a := r.Decl.Affects; a != nil {
			n, err := countData(ctx, d, q, *a)
			if err != nil {
				return fmt.Errorf("count %s for %s: %w", a.String(), key, err)
			}
			ir.Affects = &Count{Data: *a, Delta: key, Rows: n}
		}
		p.Irreversible = append(p.Irreversible, ir)
	}
	for _, name := range r.Decl.Dequeues {
		delete(queued, name)
	}
	for _, name := range r.Decl.Queues {
		queued[name] = true
	}
	return nil
}

// recountLosses counts the declared losses again through q (the
// transaction that runs the plan).
func (p *Plan) recountLosses(ctx context.Context, d *db.DB, q db.Querier) error {
	for i, c := range p.Loses {
		n, err := countData(ctx, d, q, c.Data)
		if err != nil {
			return fmt.Errorf("count %s for %s: %w", c.String(), c.Delta, err)
		}
		p.Loses[i].Rows = n
	}
	for _, ir := range p.Irreversible {
		if c := ir.Affects; c != nil {
			n, err := countData(ctx, d, q, c.Data)
			if err != nil {
				return fmt.Errorf("count %s for %s: %w", c.String(), c.Delta, err)
			}
			c.Rows = n
		}
	}
	return nil
}

// withoutRemoved leaves out the kept columns that an older reverse of the
// same plan removes (their column or their table).
func withoutRemoved(keeps, removed []Count) []Count {
	var out []Count
	for _, k := range keeps {
		gone := false
		for _, r := range removed {
			if r.Table == k.Table && r.Where == "" && (r.Kind == "table" || r.Column == k.Column) {
				gone = true
			}
		}
		if !gone {
			out = append(out, k)
		}
	}
	return out
}

// countData counts the rows (or non-NULL values) of declared data; -1 when
// its table or column does not exist.
func countData(ctx context.Context, d *db.DB, q db.Querier, dt Data) (int64, error) {
	ok, err := d.TableExists(ctx, q, dt.Table)
	if err != nil || !ok {
		return -1, err
	}
	var conds []string
	if dt.Kind == "column" {
		cols, err := d.Columns(ctx, q, dt.Table)
		if err != nil {
			return 0, err
		}
		if !contains(cols, dt.Column) {
			return -1, nil
		}
		conds = append(conds, db.QuoteIdent(dt.Column)+" IS NOT NULL")
	}
	if dt.Where != "" {
		conds = append(conds, "("+dt.Where+")")
	}
	query := "SELECT count(*) FROM " + db.QuoteIdent(dt.Table)
	if len(conds) > 0 {
		query += " WHERE " + strings.Join(conds, " AND ")
	}
	var n int64
	err = q.QueryRowContext(ctx, query).Scan(&n)
	return n, err
}

// keyVersion reads the version of an applied_schema_deltas entry "<V>/<file>".
func keyVersion(key string) (int, bool) {
	i := strings.IndexByte(key, '/')
	if i <= 0 {
		return 0, false
	}
	v := 0
	for _, c := range key[:i] {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int(c-'0')
	}
	return v, true
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
