package server

import (
	"errors"
	"net/http"
	"strings"

	"golang.org/x/crypto/bcrypt"

	"hsops/internal/store"
)

// clientPrefixes are the client API's path prefixes: Synapse 1.98 still
// serves every endpoint under r0 as well as v3, and clients such as
// matrix-nio speak r0.
var clientPrefixes = []string{"/_matrix/client/r0", "/_matrix/client/v3"}

// client registers a client endpoint ("METHOD /path") under every prefix.
func client(mux *http.ServeMux, pattern string, h http.HandlerFunc) {
	method, path, _ := strings.Cut(pattern, " ")
	for _, p := range clientPrefixes {
		mux.HandleFunc(method+" "+p+path, h)
	}
}

// clientRoutes adds the client API.
func (s *Server) clientRoutes(mux *http.ServeMux) {
	client(mux, "GET /login", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, 200, map[string]any{"flows": []map[string]string{{"type": "m.login.password"}}})
	})
	client(mux, "POST /login", s.mainOnly(s.login))
	client(mux, "POST /register", s.mainOnly(s.clientRegister))
	client(mux, "GET /account/whoami", s.authed(func(w http.ResponseWriter, _ *http.Request, u store.User) {
		writeJSON(w, 200, map[string]any{"user_id": u.ID, "device_id": u.DeviceID})
	}))
	client(mux, "POST /logout", s.authed(func(w http.ResponseWriter, r *http.Request, u store.User) {
		if err := s.store.Logout(r.Context(), u.TokenID); err != nil {
			s.internalError(w, r, err)
			return
		}
		writeJSON(w, 200, map[string]any{})
	}))
	s.roomRoutes(mux)
	s.accountRoutes(mux)
	client(mux, "GET /sync", s.mainOnly(s.authed(s.sync)))
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Type       string `json:"type"`
		User       string `json:"user"`
		Identifier struct {
			Type string `json:"type"`
			User string `json:"user"`
		} `json:"identifier"`
		Password                 string `json:"password"`
		DeviceID                 string `json:"device_id"`
		InitialDeviceDisplayName string `json:"initial_device_display_name"`
	}
	if err := readJSON(r, &body); err != nil {
		writeError(w, 400, "M_NOT_JSON", "Content not JSON.")
		return
	}
	if body.Type != "m.login.password" {
		writeError(w, 400, "M_UNKNOWN", "Unknown login type "+body.Type)
		return
	}
	user := body.Identifier.User
	if user == "" {
		user = body.User
	}
	userID := user
	if !strings.HasPrefix(user, "@") {
		userID = s.store.UserID(strings.ToLower(user))
	}
	hash, err := s.store.PasswordHash(r.Context(), userID)
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrForbidden) || (err == nil && hash == "") {
		writeError(w, 403, "M_FORBIDDEN", "Invalid username or password")
		return
	}
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	if bcrypt.CompareHashAndPassword([]byte(hash), []byte(body.Password)) != nil {
		writeError(w, 403, "M_FORBIDDEN", "Invalid username or password")
		return
	}
	token, device, err := s.store.Login(r.Context(), userID, body.DeviceID, body.InitialDeviceDisplayName)
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	writeJSON(w, 200, map[string]any{"user_id": userID, "access_token": token, "device_id": device, "home_server": s.cfg.ServerName})
}
