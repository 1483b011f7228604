package schema

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"

	"hsops/internal/db"
)

// Env is what a Go delta or a background update handler may need to know
// about the database it runs on.
type Env struct {
	Engine db.Engine
	// New is true while a database is being created: Go deltas then run
	// only their Create step (Synapse's run_create).
	New bool
	// ServerName is the homeserver's server_name, when the configuration
	// has one. Deltas that need it and find it empty derive it from users.
	ServerName string
}

// GoDelta is a schema delta written in Go, for what SQL cannot do.
type GoDelta struct {
	// Create runs for new and existing databases.
	Create func(ctx context.Context, tx *sql.Tx, env Env) error
	// Upgrade runs only for existing databases, after Create.
	Upgrade func(ctx context.Context, tx *sql.Tx, env Env) error
}

// Set is a schema: its files, its Go deltas and its version facts. The
// engine's is schema/engine's Schema; tests build small ones.
type Set struct {
	// Name identifies the schema owner in the database mark.
	Name string
	// FS holds common/, main/ and state/.
	FS fs.FS
	// Version is the newest schema version (Synapse's SCHEMA_VERSION).
	Version int
	// Oldest is the oldest version the set can upgrade from: its oldest
	// snapshot.
	Oldest int
	// Compat maps each version to the compat version a database at that
	// version records.
	Compat map[int]int
	// GoDeltas are keyed by their path, "<db>/delta/<V>/<file>.go".
	GoDeltas map[string]GoDelta
	// Updates are the handlers of the background updates the deltas
	// enqueue.
	Updates *Registry
}

// CompatFor returns the compat version recorded for a database at version v.
func (s *Set) CompatFor(v int) int {
	if c, ok := s.Compat[v]; ok {
		return c
	}
	return v
}

// Stores are the logical databases a physical database may host.
var Stores = []string{"main", "state"}

// file is one schema file (or registered Go delta) found for a version.
type file struct {
	store string // common, main, state
	name  string // file name
	path  string // path in FS, or the Go delta key
}

// snapshots lists the versions that have a full schema.
func (s *Set) snapshots() ([]int, error) {
	entries, err := fs.ReadDir(s.FS, "common/full_schemas")
	if err != nil {
		return nil, fmt.Errorf("%w: read snapshots: %v", ErrInvalidSchema, err)
	}
	var out []int
	for _, e := range entries {
		if v, err := strconv.Atoi(e.Name()); err == nil && e.IsDir() {
			out = append(out, v)
		}
	}
	sort.Ints(out)
	return out, nil
}

// snapshotFor returns the newest snapshot at or below target.
func (s *Set) snapshotFor(target int) (int, error) {
	snaps, err := s.snapshots()
	if err != nil {
		return 0, err
	}
	best := -1
	for _, v := range snaps {
		if v <= target {
			best = v
		}
	}
	if best < 0 {
		return 0, fmt.Errorf("%w: no full schema at or below version %d", ErrInvalidSchema, target)
	}
	return best, nil
}

// engineSuffix classifies a file name for an engine: run it, or skip it
// silently (the other engine's file), or reject it.
func engineSuffix(name string, e db.Engine) (run bool, err error) {
	switch {
	case strings.HasSuffix(name, ".sql"):
		return true, nil
	case strings.HasSuffix(name, ".sql."+string(e)):
		return true, nil
	case strings.HasSuffix(name, ".sql.sqlite"), strings.HasSuffix(name, ".sql.postgres"):
		return false, nil
	case strings.HasSuffix(name, ".go"):
		return true, nil
	}
	return false, fmt.Errorf("%w: %q is neither .sql, .sql.sqlite, .sql.postgres nor a Go delta", ErrInvalidSchema, name)
}

// snapshotFiles lists the files of snapshot v for the stores, in Synapse's
// order (by file name, then path: common before main before state).
func (s *Set) snapshotFiles(v int, stores []string, e db.Engine) ([]file, error) {
	var out []file
	for _, store := range append([]string{"common"}, stores...) {
		dir := path.Join(store, "full_schemas", strconv.Itoa(v))
		entries, err := fs.ReadDir(s.FS, dir)
		if err != nil {
			return nil, fmt.Errorf("%w: snapshot %d of %q: %v", ErrInvalidSchema, v, store, err)
		}
		for _, en := range entries {
			run, err := engineSuffix(en.Name(), e)
			if err != nil {
				return nil, err
			}
			if run {
				out = append(out, file{store: store, name: en.Name(), path: path.Join(dir, en.Name())})
			}
		}
	}
	sortFiles(out)
	return out, nil
}

// deltaFiles lists the deltas of version v for the stores, for an engine,
// sorted by file name. Duplicate names across stores are an error because
// applied_schema_deltas does not record the store.
func (s *Set) deltaFiles(v int, stores []string, e db.Engine) ([]file, error) {
	var out []file
	seen := map[string]string{}
	add := func(f file) error {
		if prev, dup := seen[f.name]; dup {
			return fmt.Errorf("%w: found multiple delta files with the same name in v%d: %q in %s and %s", ErrInvalidSchema, v, f.name, prev, f.store)
		}
		seen[f.name] = f.store
		out = append(out, f)
		return nil
	}
	for _, store := range append([]string{"common"}, stores...) {
		dir := path.Join(store, "delta", strconv.Itoa(v))
		entries, err := fs.ReadDir(s.FS, dir)
		if err != nil && !isNotExist(err) {
			return nil, fmt.Errorf("%w: could not open delta dir for version %d: %s: %v", ErrInvalidSchema, v, dir, err)
		}
		for _, en := range entries {
			run, err := engineSuffix(en.Name(), e)
			if err != nil {
				return nil, err
			}
			if strings.HasSuffix(en.Name(), ".go") {
				return nil, fmt.Errorf("%w: %s: Go deltas are registered in code, not stored as files", ErrInvalidSchema, path.Join(dir, en.Name()))
			}
			if run {
				if err := add(file{store: store, name: en.Name(), path: path.Join(dir, en.Name())}); err != nil {
					return nil, err
				}
			}
		}
		prefix := dir + "/"
		for key := range s.GoDeltas {
			if strings.HasPrefix(key, prefix) && !strings.Contains(strings.TrimPrefix(key, prefix), "/") {
				if err := add(file{store: store, name: strings.TrimPrefix(key, prefix), path: key}); err != nil {
					return nil, err
				}
			}
		}
	}
	sortFiles(out)
	return out, nil
}

func sortFiles(fs []file) {
	sort.Slice(fs, func(i, j int) bool {
		if fs[i].name != fs[j].name {
			return fs[i].name < fs[j].name
		}
		return fs[i].path < fs[j].path
	})
}

func isNotExist(err error) bool {
	return errors.Is(err, fs.ErrNotExist)
}
