package server

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"hsops/internal/buildinfo"
	"hsops/internal/db"
	"hsops/internal/store"
	"hsops/schema"
	"hsops/schema/engine"
)

// matrixError is the standard error body.
type matrixError struct {
	Errcode string `json:"errcode"`
	Error   string `json:"error"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, matrixError{Errcode: code, Error: msg})
}

type ctxKey int

const userKey ctxKey = 1

// statusRecorder captures the status for the request log.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

// routes builds the HTTP API. Workers serve the read endpoints only.
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("OK"))
	})
	mux.HandleFunc("GET /_synapse/admin/v1/server_version", s.serverVersion)
	mux.HandleFunc("GET /_matrix/client/versions", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, 200, map[string]any{
			"versions": []string{"r0.0.1", "r0.1.0", "r0.2.0", "r0.3.0", "r0.4.0", "r0.5.0", "r0.6.0", "r0.6.1",
				"v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6", "v1.7", "v1.8"},
			"unstable_features": map[string]bool{},
		})
	})
	mux.HandleFunc("GET /_synapse/admin/v1/background_updates/status", s.admin(s.bgStatus))
	mux.HandleFunc("GET /_synapse/admin/v1/background_updates/enabled", s.admin(s.bgEnabled))
	mux.HandleFunc("POST /_synapse/admin/v1/background_updates/enabled", s.mainOnly(s.admin(s.bgSetEnabled)))
	mux.HandleFunc("POST /_synapse/admin/v1/background_updates/start_job", s.mainOnly(s.admin(s.bgStartJob)))
	mux.HandleFunc("GET /_synapse/admin/v1/register", s.registerNonce)
	mux.HandleFunc("POST /_synapse/admin/v1/register", s.sharedSecretRegister)
	s.clientRoutes(mux)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "M_UNRECOGNIZED", "Unrecognized request")
	})
	return s.logRequests(mux)
}

// mainOnly serves a handler that writes on the main process only; a worker
// answers 404 M_UNRECOGNIZED, as Synapse's workers do for what is not
// routed to them.
func (s *Server) mainOnly(h http.HandlerFunc) http.HandlerFunc {
	if s.worker {
		return func(w http.ResponseWriter, _ *http.Request) {
			writeError(w, http.StatusNotFound, "M_UNRECOGNIZED", "Unrecognized request")
		}
	}
	return h
}

func (s *Server) logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t0 := time.Now()
		rec := &statusRecorder{ResponseWriter: w, status: 200}
		next.ServeHTTP(rec, r)
		s.log.Infof("%s %s %s %d %.1fms", r.RemoteAddr, r.Method, r.URL.Path, rec.status, float64(time.Since(t0).Microseconds())/1000)
	})
}

// accessToken reads the token from the Authorization header or the
// access_token query parameter.
func accessToken(r *http.Request) string {
	if h := r.Header.Get("Authorization"); strings.HasPrefix(h, "Bearer ") {
		return strings.TrimPrefix(h, "Bearer ")
	}
	return r.URL.Query().Get("access_token")
}

// authed wraps a handler that needs a logged-in user.
func (s *Server) authed(h func(http.ResponseWriter, *http.Request, store.User)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tok := accessToken(r)
		if tok == "" {
			writeError(w, http.StatusUnauthorized, "M_MISSING_TOKEN", "Missing access token")
			return
		}
		u, err := s.store.UserByToken(r.Context(), tok)
		switch {
		case errors.Is(err, store.ErrUnknownToken):
			writeError(w, http.StatusUnauthorized, "M_UNKNOWN_TOKEN", "Unrecognised access token")
			return
		case errors.Is(err, store.ErrForbidden):
			writeError(w, http.StatusUnauthorized, "M_USER_LOCKED", "This account has been locked")
			return
		case err != nil:
			s.internalError(w, r, err)
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), userKey, u)), u)
	}
}

// admin wraps a handler that needs a server admin.
func (s *Server) admin(h func(http.ResponseWriter, *http.Request, store.User)) http.HandlerFunc {
	return s.authed(func(w http.ResponseWriter, r *http.Request, u store.User) {
		if !u.Admin {
			writeError(w, http.StatusForbidden, "M_FORBIDDEN", "You are not a server admin")
			return
		}
		h(w, r, u)
	})
}

func (s *Server) internalError(w http.ResponseWriter, r *http.Request, err error) {
	s.log.Errorf("%s %s: %v", r.Method, r.URL.Path, err)
	writeError(w, http.StatusInternalServerError, "M_UNKNOWN", "Internal server error")
}

func (s *Server) serverVersion(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, 200, map[string]any{
		"server_version": buildinfo.ServerVersion(),
		"engine":         "hsops",
		"schema_version": engine.Schema().Version,
		"instance":       s.instance,
		"uptime_seconds": int64(time.Since(s.started).Seconds()),
		"database":       s.database,
	})
}

// databaseIdentity is what server_version says of the database the process
// serves: the engine's mark (hsops_engine: which engine created it, and
// when, in milliseconds) and its schema and compat versions. A tool that
// reads a database (upgrade-check) believes a running server only when this
// is the database it reads: a server on the configured port may belong to
// another deployment.
type databaseIdentity struct {
	Engine    string `json:"engine"`
	CreatedTS int64  `json:"created_ts"`
	Schema    int    `json:"schema_version"`
	Compat    int    `json:"compat_version"`
}

// identify reads the identity of the database d (nil when it has no mark).
// The schema and compat versions cannot change while the homeserver runs:
// deltas and rollbacks refuse a database in use.
func identify(ctx context.Context, d *db.DB) (*databaseIdentity, error) {
	st, err := schema.ReadState(ctx, d, d.DB)
	if err != nil || st.Mark == nil {
		return nil, err
	}
	return &databaseIdentity{Engine: st.Mark.Engine, CreatedTS: st.Mark.CreatedTS, Schema: st.Version, Compat: st.Compat}, nil
}

func readJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 1<<20))
	return dec.Decode(v)
}
