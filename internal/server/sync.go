package server

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"hsops/internal/notifier"
	"hsops/internal/store"
)

// maxSyncTimeout bounds a long-poll.
const maxSyncTimeout = 10 * time.Minute

// sync is /sync: initial (no since), incremental (since), and
// long-polling (timeout, in ms) until something for the user is committed.
// It is served by the main process only, which makes every write: its
// notifier sees them all (see README, workers).
func (s *Server) sync(w http.ResponseWriter, r *http.Request, u store.User) {
	req, timeout, err := s.syncRequest(r, u)
	var bad badParam
	if errors.As(err, &bad) {
		writeError(w, http.StatusBadRequest, "M_INVALID_PARAM", string(bad))
		return
	}
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	ctx := r.Context()
	var deadline <-chan time.Time
	if req.Since != nil && timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		deadline = t.C
	}
	// Listen on the user before the first read (memberships wake the
	// user); the rooms the sync finds are added after it, and a sync reads
	// again when anything committed meanwhile.
	var l *notifier.Listener
	if deadline != nil {
		l = s.store.Notifier.Listen(notifier.UserKey(u.ID))
		defer l.Close()
	}
	for {
		pos, err := s.store.Position(ctx)
		if err != nil {
			s.storeError(w, r, err)
			return
		}
		resp, err := s.store.Sync(ctx, req, pos)
		if err != nil {
			s.storeError(w, r, err)
			return
		}
		if !resp.Empty() || deadline == nil {
			writeJSON(w, http.StatusOK, resp)
			return
		}
		l.Add(resp.Listen...)
		if now, err := s.store.Position(ctx); err != nil || now != pos {
			continue
		}
		select {
		case <-l.C:
		case <-deadline:
			deadline = nil
		case <-s.quit:
			deadline = nil
		case <-ctx.Done():
			return
		}
	}
}

// badParam is a query parameter /sync cannot use (400 M_INVALID_PARAM).
type badParam string

func (b badParam) Error() string { return string(b) }

// syncRequest reads /sync's query: since, timeout, full_state and the
// filter (an ID stored with POST /filter, or JSON inline).
func (s *Server) syncRequest(r *http.Request, u store.User) (store.SyncRequest, time.Duration, error) {
	q := r.URL.Query()
	req := store.SyncRequest{UserID: u.ID, TimelineLimit: 10, FullState: q.Get("full_state") == "true"}
	if since := q.Get("since"); since != "" {
		tok, err := store.ParseSyncToken(since)
		if err != nil {
			return req, 0, badParam(errText(err))
		}
		req.Since = &tok
	}
	var timeout time.Duration
	if t := q.Get("timeout"); t != "" {
		ms, err := strconv.ParseInt(t, 10, 64)
		if err != nil || ms < 0 {
			return req, 0, badParam("timeout must be a non-negative integer (milliseconds)")
		}
		timeout = min(time.Duration(ms)*time.Millisecond, maxSyncTimeout)
	}
	f := q.Get("filter")
	if f == "" {
		return req, timeout, nil
	}
	data := []byte(f)
	if !strings.HasPrefix(f, "{") {
		id, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return req, 0, badParam("filter must be a filter ID or a JSON filter")
		}
		if data, err = s.store.Filter(r.Context(), u.ID, id); err != nil {
			return req, 0, err
		}
	}
	fl, err := parseFilter(data)
	if err != nil {
		return req, 0, badParam("Invalid filter: " + err.Error())
	}
	if fl.Room.Timeline.Limit != nil {
		req.TimelineLimit = *fl.Room.Timeline.Limit
	}
	req.LazyMembers = fl.Room.State.LazyLoadMembers
	return req, timeout, nil
}
