package upgradecheck

import (
	"context"

	"github.com/Masterminds/semver/v3"
)

// DatabaseChecks are the checks of the database alone, whatever the
// releases: duplicated state_group_edges rows, pending background updates
// and, on PostgreSQL, the encoding and locale, the sequences and (when to is
// given) the server version to needs. A rehearsal runs them on its upgraded
// copy. A database newer than the releases hsops knows is not a finding
// here: the rehearsal's own release wrote it.
func DatabaseChecks(ctx context.Context, d *Deployment, to *semver.Version) []Finding {
	checked := map[string]bool{}
	if to == nil {
		checked["postgres_floor"] = true
	}
	var out []Finding
	for _, f := range databaseFacts(ctx, d, to, checked) {
		if f.Note.ID != "newer-than-known" {
			out = append(out, f)
		}
	}
	return out
}
