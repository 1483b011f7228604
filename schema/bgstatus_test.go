package schema_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"hsops/internal/fault"
	"hsops/schema"
)

func TestUpdatesEnabled(t *testing.T) {
	ctx := context.Background()
	enabled := true
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/_synapse/admin/v1/background_updates/enabled" {
			http.NotFound(w, r)
			return
		}
		if r.Header.Get("Authorization") != "Bearer admin" {
			w.WriteHeader(http.StatusForbidden)
			_, _ = w.Write([]byte(`{"errcode":"M_FORBIDDEN","error":"You are not a server admin"}`))
			return
		}
		if r.Method == http.MethodPost {
			var body struct{ Enabled bool }
			if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			enabled = body.Enabled
		}
		_ = json.NewEncoder(w).Encode(map[string]bool{"enabled": enabled})
	}))
	defer srv.Close()

	if on, err := schema.UpdatesEnabled(ctx, srv.URL+"/", "admin", nil); err != nil || !on {
		t.Fatalf("UpdatesEnabled = %v, %v; want true", on, err)
	}
	off := false
	if on, err := schema.UpdatesEnabled(ctx, srv.URL, "admin", &off); err != nil || on || enabled {
		t.Fatalf("UpdatesEnabled(off) = %v, %v (server: %v); want false", on, err, enabled)
	}
	_, err := schema.UpdatesEnabled(ctx, srv.URL, "user", nil)
	if fault.ClassOf(err) != fault.Rejected {
		t.Errorf("a non-admin token: %v (class %v), want rejected", err, fault.ClassOf(err))
	}
	srv.Close()
	_, err = schema.UpdatesEnabled(ctx, srv.URL, "admin", nil)
	if fault.ClassOf(err) != fault.Down || errors.Is(err, context.Canceled) {
		t.Errorf("a server that is gone: %v (class %v), want down", err, fault.ClassOf(err))
	}
}
