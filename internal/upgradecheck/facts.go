package upgradecheck

import (
	"context"
	"fmt"
	"strings"

	"github.com/Masterminds/semver/v3"

	"hsops/internal/db"
	"hsops/internal/releases"
	"hsops/internal/sequences"
	"hsops/schema"
)

// fact wraps a database finding that belongs to no single note.
func fact(id, title string, res Result) Finding {
	return Finding{Note: releases.Note{ID: id, Title: title, Kind: "action", Applies: []string{"everyone"}}, Status: res.Status, Detail: res.Detail, Command: res.Command}
}

// databaseFacts checks what any upgrade needs of the database: no pending
// background updates, consistent sequences and, on PostgreSQL, a server
// version, encoding and locale the target accepts (unless a note's check in
// the range, named in checked, already did).
func databaseFacts(ctx context.Context, d *Deployment, to *semver.Version, checked map[string]bool) []Finding {
	if d.DB == nil || d.State == nil {
		return []Finding{fact("database", "The database", Result{Status: NotCheckable, Detail: "the database could not be opened: database checks were skipped"})}
	}
	var out []Finding
	if n := len(d.State.Updates); n > 0 {
		names := make([]string, 0, n)
		for _, u := range d.State.Updates {
			names = append(names, u.Name)
		}
		cmd := "update_database --database-config " + d.ConfigArg + " --run-background-updates"
		if d.State.Kind == schema.KindSynapse {
			cmd = "start the current Synapse and wait until GET /_synapse/admin/v1/background_updates/status shows none"
		}
		out = append(out, fact("pending-background-updates", "Pending background updates",
			action(fmt.Sprintf("%d background updates are still pending (%s): let them finish before upgrading, as later releases may rely on them", n, strings.Join(names, ", ")), cmd)))
	} else {
		out = append(out, fact("pending-background-updates", "Pending background updates", ok("none pending")))
	}
	if d.DB.Engine == db.Postgres {
		// The server's version, encoding and locale matter to every
		// release, not only to those whose notes mention them: a database
		// restored onto another server is checked here.
		if !checked["postgres_floor"] {
			out = append(out, fact("postgres-version", "PostgreSQL version", checkPostgresFloor(ctx, d, releases.Note{}, to)))
		}
		if !checked["postgres_locale"] {
			out = append(out, fact("postgres-locale", "Database encoding and locale", checkLocale(ctx, d, releases.Note{}, to)))
		}
		if err := sequences.Check(ctx, d.DB); err != nil {
			out = append(out, fact("sequences", "Sequences", blocker(err.Error(), "stop every process, then run the setval statements given above")))
		} else {
			out = append(out, fact("sequences", "Sequences", ok("every sequence is ahead of its table and stream positions")))
		}
	}
	return out
}

// downgrade explains what going back to an older release means for the
// database: whether that release can use it as it is.
func downgrade(d *Deployment, from, to *semver.Version) Finding {
	title := fmt.Sprintf("v%s is older than v%s: this is a downgrade", to, from)
	target, ok := releases.Find(to)
	if !ok {
		return fact("downgrade", title, Result{Status: NotCheckable, Detail: "no schema facts are known for v" + to.String()})
	}
	schemaV, compat := 0, 0
	if d.State != nil && d.State.HasVersion {
		schemaV, compat = d.State.Version, d.State.Compat
	} else if r, ok := releases.Find(from); ok {
		schemaV, compat = r.Schema, r.Compat
	}
	// The oldest release that can use the database as it is; without
	// database facts, the floor of the installed release's range.
	oldest := "no known release"
	if f, ok := releases.OldestCanRun(schemaV, compat); ok && schemaV != 0 {
		oldest = f.Tag()
	} else if floor, ok := releases.RollbackFloor(from); ok {
		oldest = floor.Tag()
	}
	if releases.CanRun(releases.SchemaFact{Version: target.Version, Schema: target.Schema, Compat: target.Compat}, schemaV, compat) {
		return fact("downgrade", title, Result{Status: OK, Detail: fmt.Sprintf("v%s (schema %d) can run on this database (schema %d, compat %d) as it is: installations of v%s can roll back to %s or later without database changes",
			to, target.Schema, schemaV, compat, from, oldest), Command: "reinstall v" + to.String() + " (see \"Rolling back to older versions\")"})
	}
	fix := "the database needs a schema rollback first"
	if d.State != nil && d.State.Kind == schema.KindEngine {
		fix = "update_database rollback --to-release " + to.String() + " --database-config " + d.ConfigArg
	} else if d.State != nil {
		fix = "update_database rollback --to-release " + to.String() + " --database-config " + d.ConfigArg + " --dry-run shows whether Synapse documents a way back; otherwise restore a backup"
	}
	return fact("downgrade", title, blocker(fmt.Sprintf("the database (schema %d, compat %d) is too new for v%s (schema %d): the oldest release that can use it is %s",
		schemaV, compat, to, target.Schema, oldest), fix))
}
