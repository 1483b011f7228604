// Package inspect is the read-only look every command takes at a
// configured database before it decides anything: whose it is and at which
// versions (schema.State), without writing a byte (not even SQLite's -wal
// and -shm files). A SQLite file that does not exist yet reads as an empty
// database, so that planning its creation needs no special case.
package inspect

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"hsops/internal/config"
	"hsops/internal/db"
	"hsops/internal/fault"
	"hsops/internal/portstate"
	"hsops/schema"
)

// Inspect opens a database read-only and reads its state. A SQLite file
// that does not exist yet reads as an empty database (d is nil then).
func Inspect(ctx context.Context, dbc config.Database) (*db.DB, *schema.State, error) {
	d, err := db.Open(ctx, dbc, db.Options{ReadOnly: true, AppName: "hsops update_database"})
	if errors.Is(err, db.ErrNotFound) {
		return nil, &schema.State{Kind: schema.KindEmpty}, nil
	}
	if err != nil {
		return nil, nil, busy(dbc, err)
	}
	st, err := schema.ReadState(ctx, d, d.DB)
	if err != nil {
		d.Close()
		return nil, nil, err
	}
	return d, st, nil
}

// ForWriting is InspectExisting for a command that will change the
// database: another hsops tool holding the schema lock is named at once,
// before a read that its open transaction would hold up.
func ForWriting(ctx context.Context, dbc config.Database) (*db.DB, *schema.State, error) {
	if dbc.IsSQLite() {
		if err := schema.CheckLockFile(dbc.SQLitePath()); err != nil {
			return nil, nil, err
		}
	}
	return InspectExisting(ctx, dbc)
}

// busy names what keeps a SQLite file locked past the busy timeout: the
// hsops tool holding the schema lock, or else another process's write.
func busy(dbc config.Database, err error) error {
	if !dbc.IsSQLite() || !strings.Contains(err.Error(), "SQLITE_BUSY") {
		return err
	}
	if lerr := schema.CheckLockFile(dbc.SQLitePath()); lerr != nil {
		return lerr
	}
	return fault.Wrap(fault.Locked, err, "another process holds a write transaction open on it (the homeserver, a backup, a sqlite3 shell): wait for it to end, then run the same command again")
}

// InspectExisting is Inspect for a database that must exist: a missing
// SQLite file is db.ErrNotFound.
func InspectExisting(ctx context.Context, dbc config.Database) (*db.DB, *schema.State, error) {
	d, st, err := Inspect(ctx, dbc)
	if err == nil && d == nil {
		err = fmt.Errorf("%w: %q", db.ErrNotFound, dbc.SQLitePath())
	}
	return d, st, err
}

// Describe names a database for messages, without secrets.
func Describe(dbc config.Database) string {
	if dbc.IsSQLite() {
		return fmt.Sprintf("SQLite database %q", dbc.SQLitePath())
	}
	return "PostgreSQL database " + dbc.String()
}

// EngineOf is the engine a database config names.
func EngineOf(dbc config.Database) db.Engine {
	if dbc.IsPostgres() {
		return db.Postgres
	}
	return db.SQLite
}

// OpenEngine opens a database for writing after checking that the hsops
// engine owns it; a Synapse database, or one with no homeserver schema, is
// refused before the read-write open. what says what would be done there
// ("run background updates").
func OpenEngine(ctx context.Context, dbc config.Database, what string) (*db.DB, error) {
	ro, st, err := InspectExisting(ctx, dbc)
	if err != nil {
		return nil, err
	}
	err = portstate.Check(ctx, ro)
	ro.Close()
	if err != nil {
		return nil, err
	}
	switch st.Kind {
	case schema.KindSynapse:
		return nil, fault.Wrap(fault.NotOurs, fmt.Errorf("%w: this is a Synapse database: Synapse runs its background updates itself, so hsops will not %s here", schema.ErrNotEngine, what),
			"nothing was changed: start Synapse to run them (its admin API controls them); `update_database background status` shows them")
	case schema.KindUnknown, schema.KindEmpty:
		return nil, fmt.Errorf("%w: the database has no homeserver schema", schema.ErrNotHomeserver)
	}
	return db.Open(ctx, dbc, db.Options{AppName: "hsops update_database"})
}

// Look is one configured database as Inspect found it.
type Look struct {
	Config config.Database
	// DB is open read-only; nil for a SQLite file that does not exist yet.
	DB    *db.DB
	State *schema.State
}

// Looks are every database of a config, inspected once.
type Looks []Look

// All inspects every database of cfg, in the config's order. On an error,
// those already open are closed.
func All(ctx context.Context, cfg *config.Config) (Looks, error) {
	looks := make(Looks, 0, len(cfg.Databases))
	for _, dbc := range cfg.Databases {
		d, st, err := Inspect(ctx, dbc)
		if err != nil {
			looks.Close()
			return nil, err
		}
		looks = append(looks, Look{Config: dbc, DB: d, State: st})
	}
	return looks, nil
}

// Close closes the databases.
func (ls Looks) Close() {
	for _, l := range ls {
		if l.DB != nil {
			l.DB.Close()
		}
	}
}

// Any reports whether one of the databases is of kind k.
func (ls Looks) Any(k schema.Kind) bool {
	for _, l := range ls {
		if l.State.Kind == k {
			return true
		}
	}
	return false
}
