package upgradecheck

import (
	"context"

	"github.com/Masterminds/semver/v3"

	"hsops/internal/releases"
)

// DatabaseChecks are the checks of the database alone, whatever the
// releases: duplicated state_group_edges rows, pending background updates
// and, on PostgreSQL, the encoding and locale, the sequences and (when to is
// given) the server version to needs. A rehearsal runs them on its upgraded
// copy.
func DatabaseChecks(ctx context.Context, d *Deployment, to *semver.Version) []Finding {
	out := []Finding{fact("state-group-edges", "Duplicated state_group_edges rows", checkEdges(ctx, d, releases.Note{}, to))}
	checked := map[string]bool{}
	if to == nil {
		checked["postgres_floor"] = true
	}
	return append(out, databaseFacts(ctx, d, to, checked)...)
}
