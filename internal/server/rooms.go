package server

import (
	"errors"
	"net/http"
	"strconv"
	"strings"

	"hsops/internal/store"
)

// roomRoutes adds the room part of the client API (Matrix v3 paths). A
// worker serves the read endpoints; the write endpoints answer 404 there,
// as Synapse's workers do for what is not routed to them.
func (s *Server) roomRoutes(mux *http.ServeMux) {
	write := func(h func(http.ResponseWriter, *http.Request, store.User)) http.HandlerFunc {
		return s.mainOnly(s.authed(h))
	}
	client(mux, "POST /createRoom", write(s.createRoom))
	client(mux, "PUT /rooms/{room}/send/{type}/{txn}", write(s.sendEvent))
	client(mux, "PUT /rooms/{room}/state/{type}", write(s.sendState))
	client(mux, "PUT /rooms/{room}/state/{type}/{key...}", write(s.sendState))
	client(mux, "GET /rooms/{room}/state/{type}", s.authed(s.stateEvent))
	client(mux, "GET /rooms/{room}/state/{type}/{key...}", s.authed(s.stateEvent))
	client(mux, "POST /rooms/{room}/join", write(s.membership("join")))
	client(mux, "POST /join/{room}", write(s.membership("join")))
	client(mux, "POST /rooms/{room}/leave", write(s.membership("leave")))
	client(mux, "POST /rooms/{room}/invite", write(s.membership("invite")))
	client(mux, "GET /rooms/{room}/messages", s.authed(s.messages))
	client(mux, "GET /rooms/{room}/state", s.authed(s.roomState))
	client(mux, "GET /rooms/{room}/joined_members", s.authed(s.joinedMembers))
	client(mux, "GET /joined_rooms", s.authed(s.joinedRooms))
	client(mux, "POST /search", s.authed(s.search))
	client(mux, "PUT /rooms/{room}/typing/{user}", write(s.typing))
	client(mux, "POST /rooms/{room}/receipt/{type}/{event}", write(s.receipt))
	client(mux, "POST /rooms/{room}/read_markers", write(s.readMarkers))
}

// storeError answers a store error with its Matrix error.
func (s *Server) storeError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, store.ErrNotInRoom), errors.Is(err, store.ErrForbidden):
		writeError(w, http.StatusForbidden, "M_FORBIDDEN", errText(err))
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, "M_NOT_FOUND", errText(err))
	case errors.Is(err, store.ErrBadToken):
		writeError(w, http.StatusBadRequest, "M_INVALID_PARAM", errText(err))
	default:
		s.internalError(w, r, err)
	}
}

// errText is the message of a store error without its class prefix.
func errText(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, ": "); i >= 0 {
		return msg[i+2:]
	}
	return msg
}

// roomID reads and checks the {room} path value.
func roomID(w http.ResponseWriter, r *http.Request) (string, bool) {
	room := r.PathValue("room")
	if !strings.HasPrefix(room, "!") || !strings.Contains(room, ":") {
		writeError(w, http.StatusBadRequest, "M_INVALID_PARAM", "Invalid room ID "+strconv.Quote(room))
		return "", false
	}
	return room, true
}

func (s *Server) createRoom(w http.ResponseWriter, r *http.Request, u store.User) {
	var body struct {
		Name       string   `json:"name"`
		Topic      string   `json:"topic"`
		Preset     string   `json:"preset"`
		Visibility string   `json:"visibility"`
		Invite     []string `json:"invite"`
	}
	if err := readJSON(r, &body); err != nil {
		writeError(w, http.StatusBadRequest, "M_NOT_JSON", "Content not JSON.")
		return
	}
	preset := body.Preset
	if preset == "" {
		preset = "private_chat"
		if body.Visibility == "public" {
			preset = "public_chat"
		}
	}
	if preset != "private_chat" && preset != "public_chat" && preset != "trusted_private_chat" {
		writeError(w, http.StatusBadRequest, "M_INVALID_PARAM", "Invalid preset "+strconv.Quote(preset))
		return
	}
	seen := map[string]bool{u.ID: true}
	for _, inv := range body.Invite {
		if !strings.HasPrefix(inv, "@") || !strings.Contains(inv, ":") || seen[inv] {
			writeError(w, http.StatusBadRequest, "M_INVALID_PARAM", "Invalid or repeated user ID in invite: "+strconv.Quote(inv))
			return
		}
		seen[inv] = true
	}
	room, err := s.store.CreateRoom(r.Context(), u, store.RoomOptions{
		Name: body.Name, Topic: body.Topic, Public: preset == "public_chat", Visibility: body.Visibility, Invite: body.Invite,
	})
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"room_id": room})
}

// sendEvent handles /send (a message, idempotent on the transaction ID).
func (s *Server) sendEvent(w http.ResponseWriter, r *http.Request, u store.User) {
	s.send(w, r, u, nil, r.PathValue("txn"))
}

// sendState handles /state (a state event; memberships have their own
// endpoints).
func (s *Server) sendState(w http.ResponseWriter, r *http.Request, u store.User) {
	if typ := r.PathValue("type"); typ == "m.room.member" || typ == "m.room.create" {
		writeError(w, http.StatusForbidden, "M_FORBIDDEN", "Use the membership endpoints for "+typ)
		return
	}
	s.send(w, r, u, store.Str(r.PathValue("key")), "")
}

func (s *Server) send(w http.ResponseWriter, r *http.Request, u store.User, stateKey *string, txn string) {
	room, ok := roomID(w, r)
	if !ok {
		return
	}
	var content map[string]any
	if err := readJSON(r, &content); err != nil {
		writeError(w, http.StatusBadRequest, "M_NOT_JSON", "Content not JSON.")
		return
	}
	id, err := s.store.Send(r.Context(), u, room, r.PathValue("type"), stateKey, content, txn)
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"event_id": id})
}

// membership handles join, leave and invite.
func (s *Server) membership(kind string) func(http.ResponseWriter, *http.Request, store.User) {
	return func(w http.ResponseWriter, r *http.Request, u store.User) {
		room, ok := roomID(w, r)
		if !ok {
			return
		}
		target := u.ID
		if kind == "invite" {
			var body struct {
				UserID string `json:"user_id"`
			}
			if err := readJSON(r, &body); err != nil {
				writeError(w, http.StatusBadRequest, "M_NOT_JSON", "Content not JSON.")
				return
			}
			if !strings.HasPrefix(body.UserID, "@") {
				writeError(w, http.StatusBadRequest, "M_MISSING_PARAM", "Missing or invalid user_id")
				return
			}
			target = body.UserID
		}
		if _, err := s.store.SetMembership(r.Context(), u.ID, target, room, kind); err != nil {
			s.storeError(w, r, err)
			return
		}
		if kind == "join" {
			writeJSON(w, http.StatusOK, map[string]any{"room_id": room})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{})
	}
}

func (s *Server) messages(w http.ResponseWriter, r *http.Request, u store.User) {
	room, ok := roomID(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	dir := q.Get("dir")
	if dir == "" {
		dir = "b"
	}
	if dir != "b" && dir != "f" {
		writeError(w, http.StatusBadRequest, "M_INVALID_PARAM", "dir must be b or f")
		return
	}
	limit := 10
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, "M_INVALID_PARAM", "limit must be a non-negative integer")
			return
		}
		limit = min(n, 1000)
	}
	page, err := s.store.Messages(r.Context(), u.ID, room, q.Get("from"), dir, limit)
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, page)
}

func (s *Server) roomState(w http.ResponseWriter, r *http.Request, u store.User) {
	room, ok := roomID(w, r)
	if !ok {
		return
	}
	events, err := s.store.RoomState(r.Context(), u.ID, room)
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, events)
}

func (s *Server) joinedRooms(w http.ResponseWriter, r *http.Request, u store.User) {
	rooms, err := s.store.JoinedRooms(r.Context(), u.ID)
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"joined_rooms": rooms})
}

func (s *Server) search(w http.ResponseWriter, r *http.Request, u store.User) {
	var body struct {
		SearchCategories struct {
			RoomEvents *struct {
				SearchTerm string `json:"search_term"`
				Filter     struct {
					Rooms []string `json:"rooms"`
					Limit int      `json:"limit"`
				} `json:"filter"`
			} `json:"room_events"`
		} `json:"search_categories"`
	}
	if err := readJSON(r, &body); err != nil {
		writeError(w, http.StatusBadRequest, "M_NOT_JSON", "Content not JSON.")
		return
	}
	re := body.SearchCategories.RoomEvents
	if re == nil || strings.TrimSpace(re.SearchTerm) == "" {
		writeError(w, http.StatusBadRequest, "M_MISSING_PARAM", "search_categories.room_events.search_term is required")
		return
	}
	limit := re.Filter.Limit
	switch {
	case limit <= 0:
		limit = 10
	case limit > 100:
		limit = 100
	}
	// next_batch (a query parameter, as in Synapse) is opaque to clients:
	// here "o<N>", the results already returned.
	offset := 0
	if nb := r.URL.Query().Get("next_batch"); nb != "" {
		n, err := strconv.Atoi(strings.TrimPrefix(nb, "o"))
		if !strings.HasPrefix(nb, "o") || err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, "M_INVALID_PARAM", "Invalid next_batch: it must be the next_batch of an earlier search")
			return
		}
		offset = n
	}
	results, count, err := s.store.Search(r.Context(), u.ID, re.SearchTerm, re.Filter.Rooms, limit, offset)
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	out := map[string]any{"results": results, "count": count, "highlights": strings.Fields(re.SearchTerm)}
	if next := offset + len(results); next < count {
		out["next_batch"] = "o" + strconv.Itoa(next)
	}
	writeJSON(w, http.StatusOK, map[string]any{"search_categories": map[string]any{"room_events": out}})
}
