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

// databaseFacts checks what any upgrade needs of the database, whatever
// the range: a homeserver database, one not newer than every release hsops
// knows, no duplicated state_group_edges rows, no pending background
// updates, consistent sequences and, on PostgreSQL, a server version,
// encoding and locale the target accepts (unless a note's check in the
// range, named in checked, already did).
func databaseFacts(ctx context.Context, d *Deployment, to *semver.Version, checked map[string]bool) []Finding {
	if d.DB == nil || d.State == nil || !d.State.HasVersion {
		what := "the database has no schema_version: it is not a homeserver database, or a new one"
		if d.DB == nil {
			what = "the database does not exist"
		}
		return []Finding{fact("database", "The database", blocker(what+": there is nothing to upgrade, or the config names the wrong database (database checks were skipped)",
			"check the database section of "+d.ConfigArg))}
	}
	var out []Finding
	if newest := releases.NewestFact(); d.State.Version > newest.Schema || d.State.Compat > newest.Schema {
		out = append(out, fact("newer-than-known", "The database is newer than any release hsops knows",
			blocker(fmt.Sprintf("the database is newer than what hsops knows: it is at schema %d/compat %d, and hsops's release facts end at %s (schema %d): a later release wrote it, and what it needs is unknown here",
				d.State.Version, d.State.Compat, newest.Tag(), newest.Schema),
				"use the release that wrote it: it runs on the database, and its own rollback (if it documents one) takes the database back to a schema hsops knows")))
	}
	if !checked["state_group_edges_duplicates"] {
		out = append(out, fact("state-group-edges", "Duplicated state_group_edges rows", checkEdges(ctx, d, releases.Note{}, to)))
	}
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

// targetFact checks the target release against the database's versions: a
// release refuses a database whose compat version is above its schema
// version. opens reports whether it can open it (false when unknown); the
// fact is nil without database versions (a blocker of databaseFacts).
func targetFact(d *Deployment, to *semver.Version) (f *Finding, opens bool) {
	if d.State == nil || !d.State.HasVersion {
		return nil, false
	}
	schemaV, compat := d.State.Version, d.State.Compat
	title := "The target release's schema against the database's compat version"
	r, found := releases.Find(to)
	if !found {
		newest := releases.NewestFact()
		res := Result{Status: NotCheckable, Detail: "hsops has no schema facts for v" + to.String()}
		if newest.Version.LessThan(to) && compat <= newest.Schema {
			// Schema versions never go down from one release to the next.
			res = ok(fmt.Sprintf("v%s is newer than hsops's facts (%s, schema %d): it runs at schema %d or later, so it opens a database at compat %d",
				to, newest.Tag(), newest.Schema, newest.Schema, compat))
		}
		x := fact("target", title, res)
		return &x, false
	}
	target := releases.SchemaFact{Version: r.Version, Schema: r.Schema, Compat: r.Compat}
	if releases.CanRun(target, schemaV, compat) {
		x := fact("target", title, ok(fmt.Sprintf("v%s (schema %d) can open this database (schema %d, compat %d)", to, r.Schema, schemaV, compat)))
		return &x, true
	}
	fix := "restore a backup taken before the newer release ran on it, or upgrade to a release at least as new as the one that last ran on it"
	if oldest, found := releases.OldestCanRun(schemaV, compat); found {
		fix = fmt.Sprintf("upgrade to %s or later (the oldest release that can open it), or restore a backup taken before the newer release ran on it", oldest.Tag())
	}
	x := fact("target", title, blocker(fmt.Sprintf("v%s (schema %d) cannot open this database (compat %d): a release refuses a database whose compat version is above its schema version",
		to, r.Schema, compat), fix))
	return &x, false
}

// rollbackFloor is the oldest release that runs on the database after the
// upgrade to to (one it can open): the upgrade raises the schema and compat
// versions to the target's, never lowers them.
func rollbackFloor(d *Deployment, to *semver.Version) string {
	r, found := releases.Find(to)
	if !found {
		return ""
	}
	schemaV, compat := max(r.Schema, d.State.Version), max(r.Compat, d.State.Compat)
	if f, found := releases.OldestCanRun(schemaV, compat); found {
		return f.Tag()
	}
	return ""
}
