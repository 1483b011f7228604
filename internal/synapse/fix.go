package synapse

import (
	"fmt"
	"hsops/internal/repair"
	"regexp"
	"strings"
)

// Causes whose fix is known. Hints say <config> where the operator's config
// goes; the tools put it in.
var (
	reUniqueSQLite   = regexp.MustCompile(`UNIQUE constraint failed: (\w+)\.`)
	reUniquePostgres = regexp.MustCompile(`could not create unique index "([^"]+)"`)
	reDuplicateKey   = regexp.MustCompile(`duplicate key value violates unique constraint "([^"]+)"`)
	reTooNew         = regexp.MustCompile(`too new for the server to understand`)
	reWorker         = regexp.MustCompile(`before starting worker processes`)
	reLocked         = regexp.MustCompile(`database is locked`)
	reLocale         = regexp.MustCompile(`(?i)incorrect (locale|encoding)|LC_COLLATE|LC_CTYPE`)
	reServerName     = regexp.MustCompile(`not native to|change a synapse server_name`)
	reNoSuchTable    = regexp.MustCompile(`no such table|relation "[^"]+" does not exist`)
)

// FixFor says what to do about a failure.
func FixFor(f *Failure) string {
	c := f.Cause
	switch {
	case f.Update == "state_group_edges_unique_idx" && (reUniqueSQLite.MatchString(c) || reUniquePostgres.MatchString(c) || strings.Contains(c, "UniqueViolation") || strings.Contains(c, "IntegrityError")):
		// Duplicated (state_group, prev_state_group) rows, typically from a
		// dump restored twice (spec section 5).
		return repair.RepairEdgesCommand
	case reUniqueSQLite.MatchString(c) || reUniquePostgres.MatchString(c) || reDuplicateKey.MatchString(c):
		table := ""
		if m := reUniqueSQLite.FindStringSubmatch(c); m != nil {
			table = " in " + m[1]
		}
		what := "the background update"
		if f.Delta != "" {
			what = "the delta"
		}
		return fmt.Sprintf("duplicated rows%s stop %s from adding a unique index or key: find them (the error names the key), keep one row per key, and rehearse again", table, what)
	case reTooNew.MatchString(c):
		return "the database was upgraded by a newer release than this Python's: use that release, or roll the database back first (update_database rollback --to-release VERSION --database-config <config> --dry-run says whether it can be done)"
	case reWorker.MatchString(c):
		return "this is a worker's config: run the upgrade with the main process's config"
	case reLocked.MatchString(c):
		return "another process holds the SQLite database: stop the homeserver (synctl stop <config>) or whatever else has it open, and run again"
	case reLocale.MatchString(c):
		return "the PostgreSQL database's encoding or locale is not what Synapse accepts: see `update_database upgrade-check` for the database's locale and the fix"
	case reServerName.MatchString(c):
		return "server_name in <config> differs from the one the database was created with: use the original server_name"
	case reNoSuchTable.MatchString(c) && f.Delta != "":
		return "delta " + f.Delta + " expects a table this database lacks: is this database's schema what its schema_version says? `update_database status --database-config <config>` and `update_database upgrade-check` tell"
	case f.Delta != "":
		return fmt.Sprintf("nothing of delta %s was kept (its file and its bookkeeping row roll back together): the error above comes from Synapse's delta; fix what it names, or report it to Synapse with the output", f.Delta)
	case f.Update != "":
		return fmt.Sprintf("background update %q keeps its saved progress: fix what the error names; Synapse retries it at its next start (or run update_database --database-config <config> --python PY --run-background-updates)", f.Update)
	}
	return "read the output above for the cause"
}
