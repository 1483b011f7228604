package schema

import (
	"context"

	"hsops/internal/db"
)

// Preflight is the one check of a database server that every tool runs
// before it prepares, upgrades, ports into or serves from a database: the
// server's version, a PostgreSQL database's encoding and locale (a locale
// other than C is accepted with allowUnsafeLocale, Synapse's
// allow_unsafe_locale), and, for a new database (st is empty), the stricter
// checks Synapse makes before it creates a schema: a new PostgreSQL
// database must have C collation and ctype, with no override. Apply runs it
// under the schema lock; tools that plan first (update_database, port_db,
// the homeserver's workers) run it on the state they planned from.
func Preflight(ctx context.Context, d *db.DB, st *State, allowUnsafeLocale bool) error {
	if err := db.CheckServer(ctx, d, allowUnsafeLocale, false); err != nil {
		return err
	}
	if st.Kind == KindEmpty && d.Engine == db.Postgres {
		return db.CheckNewPostgres(ctx, d)
	}
	return nil
}
