package server

import (
	"errors"
	"net/http"
	"strings"

	"golang.org/x/crypto/bcrypt"

	"hsops/internal/store"
)

// clientRoutes adds the client API.
func (s *Server) clientRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /_matrix/client/v3/login", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, 200, map[string]any{"flows": []map[string]string{{"type": "m.login.password"}}})
	})
	mux.HandleFunc("POST /_matrix/client/v3/login", s.mainOnly(s.login))
	mux.HandleFunc("GET /_matrix/client/v3/account/whoami", s.authed(func(w http.ResponseWriter, _ *http.Request, u store.User) {
		writeJSON(w, 200, map[string]any{"user_id": u.ID, "device_id": u.DeviceID})
	}))
	mux.HandleFunc("POST /_matrix/client/v3/logout", s.authed(func(w http.ResponseWriter, r *http.Request, u store.User) {
		if err := s.store.Logout(r.Context(), u.TokenID); err != nil {
			s.internalError(w, r, err)
			return
		}
		writeJSON(w, 200, map[string]any{})
	}))
	s.roomRoutes(mux)
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
