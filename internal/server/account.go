package server

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"

	"hsops/internal/store"
)

// accountRoutes adds profiles, filters, account data and tags.
func (s *Server) accountRoutes(mux *http.ServeMux) {
	write := func(h func(http.ResponseWriter, *http.Request, store.User)) http.HandlerFunc {
		return s.mainOnly(s.authed(h))
	}
	client(mux, "GET /profile/{user}", s.getProfile(""))
	client(mux, "GET /profile/{user}/displayname", s.getProfile("displayname"))
	client(mux, "GET /profile/{user}/avatar_url", s.getProfile("avatar_url"))
	client(mux, "PUT /profile/{user}/displayname", write(s.setProfile("displayname")))
	client(mux, "PUT /profile/{user}/avatar_url", write(s.setProfile("avatar_url")))
	client(mux, "POST /user/{user}/filter", write(s.addFilter))
	client(mux, "GET /user/{user}/filter/{id}", s.authed(s.getFilter))
	client(mux, "PUT /user/{user}/account_data/{type}", write(s.putAccountData))
	client(mux, "GET /user/{user}/account_data/{type}", s.authed(s.getAccountData))
	client(mux, "PUT /user/{user}/rooms/{room}/account_data/{type}", write(s.putAccountData))
	client(mux, "GET /user/{user}/rooms/{room}/account_data/{type}", s.authed(s.getAccountData))
	client(mux, "GET /user/{user}/rooms/{room}/tags", s.authed(s.getTags))
	client(mux, "PUT /user/{user}/rooms/{room}/tags/{tag}", write(s.putTag))
	client(mux, "DELETE /user/{user}/rooms/{room}/tags/{tag}", write(s.putTag))
}

// ownUser refuses a {user} path value that is not the requester.
func ownUser(w http.ResponseWriter, r *http.Request, u store.User, what string) bool {
	if r.PathValue("user") != u.ID {
		writeError(w, http.StatusForbidden, "M_FORBIDDEN", "Cannot "+what+" for other users.")
		return false
	}
	return true
}

func (s *Server) getProfile(field string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, err := s.store.Profile(r.Context(), r.PathValue("user"))
		if err != nil {
			s.storeError(w, r, err)
			return
		}
		out := map[string]any{}
		if p.DisplayName != "" && field != "avatar_url" {
			out["displayname"] = p.DisplayName
		}
		if p.AvatarURL != "" && field != "displayname" {
			out["avatar_url"] = p.AvatarURL
		}
		writeJSON(w, http.StatusOK, out)
	}
}

func (s *Server) setProfile(field string) func(http.ResponseWriter, *http.Request, store.User) {
	return func(w http.ResponseWriter, r *http.Request, u store.User) {
		if r.PathValue("user") != u.ID {
			writeError(w, http.StatusForbidden, "M_FORBIDDEN", "Cannot set another user's "+field)
			return
		}
		var body map[string]any
		if err := readJSON(r, &body); err != nil {
			writeError(w, http.StatusBadRequest, "M_NOT_JSON", "Content not JSON.")
			return
		}
		value, ok := body[field].(string)
		if _, present := body[field]; !ok && present && body[field] != nil {
			writeError(w, http.StatusBadRequest, "M_INVALID_PARAM", field+" must be a string")
			return
		}
		if len(value) > 256 && field == "displayname" {
			writeError(w, http.StatusBadRequest, "M_INVALID_PARAM", "Displayname is too long (max 256)")
			return
		}
		if _, err := s.store.SetProfile(r.Context(), u, field, value); err != nil {
			s.storeError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{})
	}
}

// canonicalJSON re-encodes a JSON object with sorted keys and no spaces.
func canonicalJSON(data []byte) ([]byte, error) {
	var v map[string]any
	if err := json.Unmarshal(data, &v); err != nil {
		return nil, err
	}
	if v == nil {
		return nil, errors.New("not an object")
	}
	return json.Marshal(v)
}

func readBody(r *http.Request) ([]byte, error) {
	return io.ReadAll(http.MaxBytesReader(nil, r.Body, 1<<20))
}

func (s *Server) addFilter(w http.ResponseWriter, r *http.Request, u store.User) {
	if !ownUser(w, r, u, "create filters") {
		return
	}
	data, err := readBody(r)
	if err == nil {
		data, err = canonicalJSON(data)
	}
	if err == nil {
		_, err = parseFilter(data)
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, "M_NOT_JSON", "Content not JSON or not a filter: "+err.Error())
		return
	}
	id, err := s.store.AddFilter(r.Context(), u.ID, data)
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"filter_id": strconv.FormatInt(id, 10)})
}

func (s *Server) getFilter(w http.ResponseWriter, r *http.Request, u store.User) {
	if !ownUser(w, r, u, "get filters") {
		return
	}
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		writeError(w, http.StatusBadRequest, "M_INVALID_PARAM", "Invalid filter_id "+strconv.Quote(r.PathValue("id")))
		return
	}
	data, err := s.store.Filter(r.Context(), u.ID, id)
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(data)
}

// filter is the part of a sync filter the engine honours.
type filter struct {
	Room struct {
		Timeline struct {
			Limit *int `json:"limit"`
		} `json:"timeline"`
		State struct {
			LazyLoadMembers bool `json:"lazy_load_members"`
		} `json:"state"`
	} `json:"room"`
}

func parseFilter(data []byte) (filter, error) {
	var f filter
	if err := json.Unmarshal(data, &f); err != nil {
		return f, err
	}
	if l := f.Room.Timeline.Limit; l != nil && *l < 0 {
		return f, errors.New("room.timeline.limit must not be negative")
	}
	return f, nil
}

func (s *Server) putAccountData(w http.ResponseWriter, r *http.Request, u store.User) {
	if !ownUser(w, r, u, "add account data") {
		return
	}
	room, typ := r.PathValue("room"), r.PathValue("type")
	if room != "" {
		if _, ok := roomID(w, r); !ok {
			return
		}
	}
	switch {
	case room != "" && typ == "m.fully_read":
		writeError(w, http.StatusBadRequest, "M_BAD_JSON", "Cannot set m.fully_read through this API. Use /rooms/!roomId:server.name/read_markers")
		return
	case room == "" && typ == "m.push_rules":
		writeError(w, http.StatusBadRequest, "M_BAD_JSON", "Cannot set m.push_rules through this API. Use /pushrules")
		return
	}
	data, err := readBody(r)
	if err == nil {
		data, err = canonicalJSON(data)
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, "M_NOT_JSON", "Content not JSON.")
		return
	}
	if err := s.store.SetAccountData(r.Context(), u.ID, room, typ, data); err != nil {
		s.storeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{})
}

func (s *Server) getAccountData(w http.ResponseWriter, r *http.Request, u store.User) {
	if !ownUser(w, r, u, "get account data") {
		return
	}
	data, err := s.store.AccountData(r.Context(), u.ID, r.PathValue("room"), r.PathValue("type"))
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(data)
}

func (s *Server) getTags(w http.ResponseWriter, r *http.Request, u store.User) {
	if !ownUser(w, r, u, "get tags") {
		return
	}
	tags, err := s.store.Tags(r.Context(), u.ID, r.PathValue("room"))
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"tags": tags})
}

func (s *Server) putTag(w http.ResponseWriter, r *http.Request, u store.User) {
	if !ownUser(w, r, u, "add tags") {
		return
	}
	room, ok := roomID(w, r)
	if !ok {
		return
	}
	var content []byte
	if r.Method == http.MethodPut {
		data, err := readBody(r)
		if err == nil {
			content, err = canonicalJSON(data)
		}
		if err != nil {
			writeError(w, http.StatusBadRequest, "M_NOT_JSON", "Content not JSON.")
			return
		}
	}
	if err := s.store.SetTag(r.Context(), u.ID, room, r.PathValue("tag"), content); err != nil {
		s.storeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{})
}

func (s *Server) typing(w http.ResponseWriter, r *http.Request, u store.User) {
	room, ok := roomID(w, r)
	if !ok {
		return
	}
	if r.PathValue("user") != u.ID {
		writeError(w, http.StatusForbidden, "M_FORBIDDEN", "Cannot set another user's typing state")
		return
	}
	var body struct {
		Typing  *bool  `json:"typing"`
		Timeout *int64 `json:"timeout"`
	}
	if err := readJSON(r, &body); err != nil {
		writeError(w, http.StatusBadRequest, "M_NOT_JSON", "Content not JSON.")
		return
	}
	if body.Typing == nil {
		writeError(w, http.StatusBadRequest, "M_MISSING_PARAM", "Missing typing")
		return
	}
	timeout := 30 * time.Second
	if body.Timeout != nil {
		timeout = time.Duration(min(max(*body.Timeout, 0), 3_600_000)) * time.Millisecond
	}
	if err := s.store.CheckJoined(r.Context(), u.ID, room); err != nil {
		s.storeError(w, r, err)
		return
	}
	s.store.SetTyping(room, u.ID, *body.Typing, timeout)
	writeJSON(w, http.StatusOK, map[string]any{})
}

var threadID = regexp.MustCompile(`^(main|\$.+)$`)

func (s *Server) receipt(w http.ResponseWriter, r *http.Request, u store.User) {
	room, ok := roomID(w, r)
	if !ok {
		return
	}
	typ, event := r.PathValue("type"), r.PathValue("event")
	var body struct {
		ThreadID string `json:"thread_id"`
	}
	// The body is optional (matrix-nio sends none).
	if data, err := readBody(r); err != nil || (len(strings.TrimSpace(string(data))) > 0 && json.Unmarshal(data, &body) != nil) {
		writeError(w, http.StatusBadRequest, "M_NOT_JSON", "Content not JSON.")
		return
	}
	if body.ThreadID != "" && !threadID.MatchString(body.ThreadID) {
		writeError(w, http.StatusBadRequest, "M_INVALID_PARAM", "thread_id field must be a non-empty string")
		return
	}
	var err error
	switch typ {
	case "m.read", "m.read.private":
		err = s.store.SetReceipt(r.Context(), u, room, typ, event, body.ThreadID)
	case "m.fully_read":
		if body.ThreadID != "" {
			writeError(w, http.StatusBadRequest, "M_INVALID_PARAM", "thread_id is not compatible with m.fully_read receipts")
			return
		}
		err = s.store.SetReadMarkers(r.Context(), u, room, event, nil)
	default:
		writeError(w, http.StatusBadRequest, "M_INVALID_PARAM", "Receipt type must be 'm.read', 'm.read.private' or 'm.fully_read'")
		return
	}
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{})
}

func (s *Server) readMarkers(w http.ResponseWriter, r *http.Request, u store.User) {
	room, ok := roomID(w, r)
	if !ok {
		return
	}
	var body map[string]string
	if err := readJSON(r, &body); err != nil {
		writeError(w, http.StatusBadRequest, "M_NOT_JSON", "Content not JSON.")
		return
	}
	if err := s.store.SetReadMarkers(r.Context(), u, room, body["m.fully_read"], body); err != nil {
		s.storeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{})
}

func (s *Server) stateEvent(w http.ResponseWriter, r *http.Request, u store.User) {
	room, ok := roomID(w, r)
	if !ok {
		return
	}
	content, err := s.store.StateEvent(r.Context(), u.ID, room, r.PathValue("type"), r.PathValue("key"))
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(content)
}

func (s *Server) joinedMembers(w http.ResponseWriter, r *http.Request, u store.User) {
	room, ok := roomID(w, r)
	if !ok {
		return
	}
	members, err := s.store.JoinedMembers(r.Context(), u.ID, room)
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"joined": members})
}

// clientRegister is /register with the m.login.dummy stage, open only when
// the config says enable_registration: true (as in Synapse).
func (s *Server) clientRegister(w http.ResponseWriter, r *http.Request) {
	if !s.cfg.EnableRegistration {
		writeError(w, http.StatusForbidden, "M_FORBIDDEN", "Registration has been disabled")
		return
	}
	if r.URL.Query().Get("kind") == "guest" {
		writeError(w, http.StatusForbidden, "M_GUEST_ACCESS_FORBIDDEN", "Guest access is disabled")
		return
	}
	var body struct {
		Auth *struct {
			Type string `json:"type"`
		} `json:"auth"`
		Username                 string `json:"username"`
		Password                 string `json:"password"`
		DeviceID                 string `json:"device_id"`
		InitialDeviceDisplayName string `json:"initial_device_display_name"`
		InhibitLogin             bool   `json:"inhibit_login"`
	}
	if err := readJSON(r, &body); err != nil {
		writeError(w, http.StatusBadRequest, "M_NOT_JSON", "Content not JSON.")
		return
	}
	if body.Auth == nil || body.Auth.Type != "m.login.dummy" {
		writeJSON(w, http.StatusUnauthorized, map[string]any{"flows": []map[string]any{{"stages": []string{"m.login.dummy"}}}, "params": map[string]any{}, "session": store.RandomToken(18)})
		return
	}
	local := strings.ToLower(strings.TrimPrefix(strings.TrimSuffix(body.Username, ":"+s.cfg.ServerName), "@"))
	if local == "" || !localpartRE.MatchString(local) {
		writeError(w, http.StatusBadRequest, "M_INVALID_USERNAME", "User ID can only contain characters a-z, 0-9, or '=_-./+'")
		return
	}
	if body.Password == "" {
		writeError(w, http.StatusBadRequest, "M_MISSING_PARAM", "Missing password")
		return
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(body.Password), s.bcryptCost())
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	userID, err := s.store.RegisterUser(r.Context(), local, string(hash), false, "")
	if errors.Is(err, store.ErrUserInUse) {
		writeError(w, http.StatusBadRequest, "M_USER_IN_USE", "User ID already taken.")
		return
	}
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	out := map[string]any{"user_id": userID, "home_server": s.cfg.ServerName}
	if !body.InhibitLogin {
		token, device, err := s.store.Login(r.Context(), userID, body.DeviceID, body.InitialDeviceDisplayName)
		if err != nil {
			s.internalError(w, r, err)
			return
		}
		out["access_token"], out["device_id"] = token, device
	}
	writeJSON(w, http.StatusOK, out)
}
