package upgradecheck

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
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

func TestInstalled(t *testing.T) {
	ctx := context.Background()
	cfg := deployment(t, "").Config
	st := &schema.State{Kind: schema.KindSynapse, HasVersion: true, Version: 83, HasCompat: true, Compat: 83}
	inferred := releases.Matching(83, 83)[0].Version
	engine := releases.Matching(76, 0)[0].Version
	gone := versionServer(t, "{}")
	gone.Close()
	for _, tc := range []struct {
		name   string
		server string
		st     *schema.State
		want   string
		how    string
	}{
		{"synapse answers", versionServer(t, `{"server_version": "1.98.0 (b=matrix-org-hotfixes)"}`).URL, st, "1.98.0", "the running server at "},
		{"the engine answers", versionServer(t, `{"server_version": "0.1.0", "engine": "hsops", "schema_version": 76}`).URL, st, engine.String(), "the running hsops engine at "},
		{"no server: the database", gone.URL, st, inferred.String(), "inferred from the database (schema 83, compat 83)"},
		{"an answer that is no version", versionServer(t, `{"server_version": "dev"}`).URL, st, inferred.String(), "inferred from the database"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, how, err := Installed(ctx, cfg, tc.server, tc.st)
			if err != nil {
				t.Fatal(err)
			}
			if v.String() != tc.want || !strings.HasPrefix(how, tc.how) {
				t.Errorf("Installed = %s (%s), want %s (%s...)", v, how, tc.want, tc.how)
			}
		})
	}
	if _, _, err := Installed(ctx, cfg, gone.URL, &schema.State{Kind: schema.KindEmpty}); !errors.Is(err, ErrUnknownInstalled) {
		t.Errorf("nothing to go by: %v, want ErrUnknownInstalled", err)
	}
}
