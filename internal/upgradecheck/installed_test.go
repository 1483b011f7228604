package upgradecheck

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"hsops/internal/releases"
	"hsops/schema"
)

func versionServer(t *testing.T, body string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/_synapse/admin/v1/server_version" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestFindInstalled: the database's versions are the ground truth; --from
// and a server's answer are believed only when the database confirms them.
func TestFindInstalled(t *testing.T) {
	ctx := context.Background()
	cfg := deployment(t, "").Config
	v98 := &schema.State{Kind: schema.KindSynapse, HasVersion: true, Version: 83, HasCompat: true, Compat: 83}
	v58 := &schema.State{Kind: schema.KindEngine, HasVersion: true, Version: 69, HasCompat: true, Compat: 69, Mark: &schema.Mark{Engine: "hsops", CreatedVersion: 69, CreatedTS: 1700000000000}}
	future := &schema.State{Kind: schema.KindSynapse, HasVersion: true, Version: 90, HasCompat: true, Compat: 88}
	gone := versionServer(t, "{}")
	gone.Close()
	engineAt := func(ts int64, schemaV, compat int) string {
		return `{"server_version": "hsops/0.1.0", "engine": "hsops", "schema_version": 83, "database": {"engine": "hsops", "created_ts": ` +
			itoa(ts) + `, "schema_version": ` + itoa(int64(schemaV)) + `, "compat_version": ` + itoa(int64(compat)) + `}}`
	}
	for _, tc := range []struct {
		name   string
		from   string
		server string
		st     *schema.State
		want   string // "" for unknown
		how    string
		claim  Status // "" for no claim finding
		detail string
	}{
		{"synapse answers", "", versionServer(t, `{"server_version": "1.98.0 (b=matrix-org-hotfixes)"}`).URL, v98, "1.98.0", "the running server at ", OK, "v1.98.0 runs at 83"},
		{"synapse after a rollback", "", versionServer(t, `{"server_version": "1.97.1"}`).URL, v98, "1.97.1", "the running server at ", OK, ""},
		{"synapse contradicted", "", versionServer(t, `{"server_version": "1.96.0"}`).URL, v58, "1.58.0", "inferred from the database (schema 69, compat 69)", Blocker,
			"the database is at schema 69/compat 69; v1.96.0 runs at 80-83: --server names another deployment's server"},
		{"the engine on this database", "", versionServer(t, engineAt(1700000000000, 69, 69)).URL, v58, "1.58.0", "the running hsops engine at ", OK, "it serves the hsops engine database created 2023-11-14T22:13:20Z"},
		{"the engine on another database", "", versionServer(t, engineAt(1700000000001, 83, 83)).URL, v58, "1.58.0", "inferred from the database", Blocker,
			"it serves the hsops engine database created 2023-11-14T22:13:20.001Z (schema 83/compat 83); this deployment's is the hsops engine database created 2023-11-14T22:13:20Z (schema 69/compat 69)"},
		{"an engine that does not name its database", "", versionServer(t, `{"server_version": "0.1.0", "engine": "hsops", "schema_version": 83}`).URL, v58, "1.58.0", "inferred from the database", Blocker, "the hsops engine (schema 83)"},
		{"no server: the database", "", gone.URL, v98, "1.98.0", "inferred from the database (schema 83, compat 83)", "", ""},
		{"an answer that is no version", "", versionServer(t, `{"server_version": "dev"}`).URL, v98, "1.98.0", "inferred from the database", "", ""},
		{"--from confirmed", "1.96.0", "", v98, "1.96.0", "--from", OK, "v1.96.0 runs at 80-83"},
		{"--from contradicted", "1.80.0", "", v98, "1.98.0", "inferred from the database", Blocker, "the database is at schema 83/compat 83; v1.80.0 runs at 73-74: --from is wrong"},
		{"--from later than the facts", "1.120.0", "", v58, "1.58.0", "inferred from the database", Blocker, "so it runs at schema 83 or later"},
		{"--from on a future database", "1.98.0", "", future, "", "no release hsops knows runs on the database (schema 90, compat 88); not --from v1.98.0", Blocker, ""},
		{"a future database", "", gone.URL, future, "", "no release hsops knows runs on the database", "", ""},
		{"--from without a database", "1.80.0", "", &schema.State{Kind: schema.KindEmpty}, "1.80.0", "--from", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			from, _ := releases.ParseVersion(tc.from)
			if tc.from == "" {
				from = nil
			}
			inst := FindInstalled(ctx, cfg, from, tc.server, tc.st)
			got := ""
			if inst.Version != nil {
				got = inst.Version.String()
			}
			if got != tc.want || !strings.HasPrefix(inst.Source, tc.how) {
				t.Errorf("installed %q (%s), want %q (%s...)", got, inst.Source, tc.want, tc.how)
			}
			var status Status
			if inst.Claim != nil {
				status = inst.Claim.Status
			}
			if status != tc.claim || (inst.Claim != nil && !strings.Contains(inst.Claim.Detail, tc.detail)) {
				t.Errorf("claim %+v, want %s with %q", inst.Claim, tc.claim, tc.detail)
			}
		})
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
