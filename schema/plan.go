package schema

import (
	"fmt"
	"io/fs"
	"strings"

	"hsops/internal/db"
)

// Options control planning and applying.
type Options struct {
	// Target is the schema version to reach; 0 means the set's Version.
	Target int
	// Stores are the logical databases hosted here; nil means main and state.
	Stores []string
	// Worker plans as a worker process: never write, refuse a database the
	// main process has not prepared.
	Worker bool
	// ServerName is passed to Go deltas and background updates.
	ServerName string
	// AllowUnsafeLocale accepts an existing PostgreSQL database whose
	// locale is not C (the database config's allow_unsafe_locale; see
	// Preflight).
	AllowUnsafeLocale bool
	// Holder describes this process to another one that finds the schema
	// lock taken.
	Holder string
	// LockHeld says the caller already holds the schema lock (AcquireLock)
	// for longer than this Apply, as port_db does for its whole run.
	LockHeld bool
	// Progress, when set, receives an event per step.
	Progress func(Event)
	// CountRows fills Event.Rows for each delta (a rehearsal's measure).
	CountRows bool
}

// Event reports progress while applying.
type Event struct {
	// Type is "snapshot", "version" or "delta".
	Type    string `json:"event"`
	Version int    `json:"version"`
	File    string `json:"file,omitempty"`
	// Millis is how long the step took, for "delta" and "snapshot".
	Millis int64 `json:"ms,omitempty"`
	// Rows is the number of rows a delta inserted, updated or deleted
	// (with Options.CountRows; -1 when it could not be counted).
	Rows int64 `json:"rows,omitempty"`
}

// DeltaKind says how a delta runs.
type DeltaKind int

// The kinds of delta.
const (
	DeltaSQL DeltaKind = iota
	DeltaGo
)

// Delta is one file to run.
type Delta struct {
	Version int
	Store   string
	Name    string
	Path    string
	Kind    DeltaKind
	SQL     string
	Go      *GoDelta
}

// Key is the delta's applied_schema_deltas entry, "<V>/<file>".
func (d Delta) Key() string { return fmt.Sprintf("%d/%s", d.Version, d.Name) }

// Step is one version: its compat version and its deltas.
type Step struct {
	Version int
	// Compat is the compat version after the step (never lower than the
	// stored one).
	Compat int
	Deltas []Delta
}

// Plan is everything an upgrade will do, worked out before any write.
type Plan struct {
	Engine db.Engine
	Stores []string
	Target int
	State  *State
	// Create is true for a new database, built from Snapshot.
	Create        bool
	Snapshot      int
	SnapshotFiles []Delta
	Steps         []Step
	// Note explains a plan with nothing to do.
	Note string
}

// Empty reports whether the plan writes nothing.
func (p *Plan) Empty() bool { return !p.Create && len(p.Steps) == 0 }

// DeltaCount is the number of deltas the plan runs.
func (p *Plan) DeltaCount() int {
	n := 0
	for _, s := range p.Steps {
		n += len(s.Deltas)
	}
	return n
}

func (o Options) stores() []string {
	if len(o.Stores) == 0 {
		return Stores
	}
	return o.Stores
}

// Plan works out what bringing a database in state st to the target takes.
// Every file is read and every Go delta resolved here, so that a plan that
// is returned can be executed without surprises from the schema set.
func (s *Set) Plan(st *State, e db.Engine, opts Options) (*Plan, error) {
	target := opts.Target
	explicit := target != 0
	if !explicit {
		target = s.Version
	}
	if target < s.Oldest || target > s.Version {
		return nil, fmt.Errorf("%w: %d (this version supports %d to %d)", ErrBadTarget, target, s.Oldest, s.Version)
	}
	p := &Plan{Engine: e, Stores: opts.stores(), Target: target, State: st}
	switch st.Kind {
	case KindSynapse:
		compat := "none"
		if st.HasCompat {
			compat = fmt.Sprint(st.Compat)
		}
		return nil, fmt.Errorf("%w: this is a Synapse database (schema %d, compat %s): Synapse applies its own deltas to it", ErrNotEngine, st.Version, compat)
	case KindUnknown:
		return nil, fmt.Errorf("%w: it has %d tables but no schema_version", ErrNotHomeserver, st.Tables)
	case KindEmpty:
		if opts.Worker {
			return nil, fmt.Errorf("%w: uninitialised database: run the main process to prepare the database schema before starting worker processes", ErrWorker)
		}
		return p, s.planCreate(p, target)
	}
	if st.HasCompat && st.Compat > s.Version {
		return nil, s.Newer(st)
	}
	if st.Version < s.Oldest {
		return nil, fmt.Errorf("%w: it is at schema %d and the oldest this version upgrades from is %d", ErrTooOld, st.Version, s.Oldest)
	}
	if st.Version > target {
		if explicit {
			return nil, fmt.Errorf("%w: the database is at schema %d, above the target %d (a downgrade is a rollback)", ErrBadTarget, st.Version, target)
		}
		p.Note = fmt.Sprintf("the database is at schema %d, newer than what hsops knows (%d to %d), and its compat version %d lets this version use it: nothing to do", st.Version, s.Oldest, s.Version, st.Compat)
		return p, nil
	}
	start := st.Version
	if !st.Upgraded {
		start++
	}
	compat := st.Compat
	for v := start; v <= target; v++ {
		files, err := s.deltaFiles(v, p.Stores, e)
		if err != nil {
			return nil, err
		}
		step := Step{Version: v, Compat: max(compat, s.CompatFor(v))}
		compat = step.Compat
		for _, f := range files {
			d, err := s.load(v, f)
			if err != nil {
				return nil, err
			}
			if st.IsApplied(d.Key()) {
				continue
			}
			step.Deltas = append(step.Deltas, d)
		}
		if v == st.Version && len(step.Deltas) == 0 {
			continue
		}
		if opts.Worker {
			if st.Version < target {
				return nil, fmt.Errorf("%w: expected database schema version %d but got %d: run the main process to upgrade the database schema before starting worker processes", ErrWorker, target, st.Version)
			}
			return nil, fmt.Errorf("%w: database schema delta %s has not been applied: run the main process to upgrade the database schema before starting worker processes", ErrWorker, step.Deltas[0].Key())
		}
		p.Steps = append(p.Steps, step)
	}
	if len(p.Steps) == 0 {
		p.Note = fmt.Sprintf("the database is at schema %d: up to date", st.Version)
	}
	return p, nil
}

func (s *Set) planCreate(p *Plan, target int) error {
	snap, err := s.snapshotFor(target)
	if err != nil {
		return err
	}
	p.Create = true
	p.Snapshot = snap
	files, err := s.snapshotFiles(snap, p.Stores, p.Engine)
	if err != nil {
		return err
	}
	for _, f := range files {
		d, err := s.load(snap, f)
		if err != nil {
			return err
		}
		p.SnapshotFiles = append(p.SnapshotFiles, d)
	}
	compat := s.CompatFor(snap)
	for v := snap + 1; v <= target; v++ {
		files, err := s.deltaFiles(v, p.Stores, p.Engine)
		if err != nil {
			return err
		}
		step := Step{Version: v, Compat: max(compat, s.CompatFor(v))}
		compat = step.Compat
		for _, f := range files {
			d, err := s.load(v, f)
			if err != nil {
				return err
			}
			step.Deltas = append(step.Deltas, d)
		}
		p.Steps = append(p.Steps, step)
	}
	return nil
}

// load reads a file's SQL or resolves its Go code.
func (s *Set) load(v int, f file) (Delta, error) {
	d := Delta{Version: v, Store: f.store, Name: f.name, Path: f.path}
	if strings.HasSuffix(f.name, ".go") {
		g, ok := s.GoDeltas[f.path]
		if !ok || (g.Create == nil && g.Upgrade == nil) {
			return Delta{}, fmt.Errorf("%w: Go delta %s has no code", ErrInvalidSchema, f.path)
		}
		d.Kind = DeltaGo
		d.Go = &g
		return d, nil
	}
	data, err := fs.ReadFile(s.FS, f.path)
	if err != nil {
		return Delta{}, fmt.Errorf("%w: read %s: %v", ErrInvalidSchema, f.path, err)
	}
	if strings.TrimSpace(string(data)) == "" {
		return Delta{}, fmt.Errorf("%w: %s is empty", ErrInvalidSchema, f.path)
	}
	d.SQL = string(data)
	return d, nil
}

// Deltas returns the loaded deltas of version v for the stores on an
// engine, in the order they run.
func (s *Set) Deltas(v int, stores []string, e db.Engine) ([]Delta, error) {
	files, err := s.deltaFiles(v, stores, e)
	if err != nil {
		return nil, err
	}
	out := make([]Delta, 0, len(files))
	for _, f := range files {
		d, err := s.load(v, f)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}
