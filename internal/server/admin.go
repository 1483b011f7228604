package server

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"

	"hsops/internal/store"
	"hsops/schema"
	"hsops/schema/engine"
)

func (s *Server) bgStatus(w http.ResponseWriter, _ *http.Request, _ store.User) {
	current := map[string]any{}
	for label, st := range s.bg.status() {
		current[label] = st
	}
	writeJSON(w, 200, map[string]any{"enabled": s.bg.isEnabled(), "current_updates": current})
}

func (s *Server) bgEnabled(w http.ResponseWriter, _ *http.Request, _ store.User) {
	writeJSON(w, 200, map[string]bool{"enabled": s.bg.isEnabled()})
}

func (s *Server) bgSetEnabled(w http.ResponseWriter, r *http.Request, _ store.User) {
	var body map[string]any
	if err := readJSON(r, &body); err != nil {
		writeError(w, 400, "M_NOT_JSON", "Content not JSON.")
		return
	}
	enabled := true
	if v, ok := body["enabled"]; ok {
		b, isBool := v.(bool)
		if !isBool {
			writeError(w, 400, "M_UNKNOWN", "'enabled' parameter must be a boolean")
			return
		}
		enabled = b
	}
	s.bg.setEnabled(enabled)
	writeJSON(w, 200, map[string]bool{"enabled": enabled})
}

func (s *Server) bgStartJob(w http.ResponseWriter, r *http.Request, _ store.User) {
	var body struct {
		JobName *string `json:"job_name"`
	}
	if err := readJSON(r, &body); err != nil {
		writeError(w, 400, "M_NOT_JSON", "Content not JSON.")
		return
	}
	if body.JobName == nil {
		writeError(w, 400, "M_MISSING_PARAM", "Missing params: ['job_name']")
		return
	}
	err := engine.Schema().Updates.StartJob(r.Context(), s.store.DB, *body.JobName)
	switch {
	case errors.Is(err, schema.ErrUnknownJob):
		writeError(w, 400, "M_UNKNOWN", "Invalid job_name")
		return
	case errors.Is(err, schema.ErrJobQueued):
		writeError(w, 400, "M_UNKNOWN", "Job "+*body.JobName+" is already in queue of background updates.")
		return
	case err != nil:
		s.internalError(w, r, err)
		return
	}
	s.bg.wake()
	writeJSON(w, 200, map[string]any{})
}

// nonceStore remembers the nonces handed out for shared-secret
// registration, each valid for a minute and usable once.
type nonceStore struct {
	mu     sync.Mutex
	nonces map[string]time.Time
}

func newNonceStore() *nonceStore { return &nonceStore{nonces: map[string]time.Time{}} }

func (n *nonceStore) issue() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	for k, t := range n.nonces {
		if time.Since(t) > time.Minute {
			delete(n.nonces, k)
		}
	}
	v := store.RandomToken(24)
	n.nonces[v] = time.Now()
	return v
}

func (n *nonceStore) take(v string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	t, ok := n.nonces[v]
	delete(n.nonces, v)
	return ok && time.Since(t) <= time.Minute
}

func (s *Server) registerNonce(w http.ResponseWriter, _ *http.Request) {
	if s.cfg.RegistrationSharedSecret == "" || s.worker {
		writeError(w, 400, "M_UNKNOWN", "Shared secret registration is not enabled")
		return
	}
	writeJSON(w, 200, map[string]string{"nonce": s.nonces.issue()})
}

// RegistrationMAC computes Synapse's shared-secret registration HMAC.
func RegistrationMAC(secret, nonce, user, password string, admin bool) string {
	mac := hmac.New(sha1.New, []byte(secret))
	role := "notadmin"
	if admin {
		role = "admin"
	}
	mac.Write([]byte(nonce + "\x00" + user + "\x00" + password + "\x00" + role))
	return hex.EncodeToString(mac.Sum(nil))
}

var localpartRE = regexp.MustCompile(`^[a-z0-9._=\-/+]+$`)

func (s *Server) sharedSecretRegister(w http.ResponseWriter, r *http.Request) {
	if s.cfg.RegistrationSharedSecret == "" || s.worker {
		writeError(w, 400, "M_UNKNOWN", "Shared secret registration is not enabled")
		return
	}
	var body struct {
		Nonce       string `json:"nonce"`
		Username    string `json:"username"`
		Password    string `json:"password"`
		Displayname string `json:"displayname"`
		Admin       bool   `json:"admin"`
		Mac         string `json:"mac"`
	}
	if err := readJSON(r, &body); err != nil {
		writeError(w, 400, "M_NOT_JSON", "Content not JSON.")
		return
	}
	if !s.nonces.take(body.Nonce) {
		writeError(w, 400, "M_UNKNOWN", "unrecognised nonce")
		return
	}
	want := RegistrationMAC(s.cfg.RegistrationSharedSecret, body.Nonce, body.Username, body.Password, body.Admin)
	if !hmac.Equal([]byte(want), []byte(strings.ToLower(body.Mac))) {
		writeError(w, 403, "M_FORBIDDEN", "HMAC incorrect")
		return
	}
	s.register(w, r, body.Username, body.Password, body.Displayname, body.Admin)
}

// register creates a user, logs it in, and answers as Synapse does.
func (s *Server) register(w http.ResponseWriter, r *http.Request, localpart, password, displayName string, admin bool) {
	localpart = strings.ToLower(localpart)
	if !localpartRE.MatchString(localpart) {
		writeError(w, 400, "M_INVALID_USERNAME", "User ID can only contain characters a-z, 0-9, or '=_-./+'")
		return
	}
	hash := ""
	if password != "" {
		h, err := bcrypt.GenerateFromPassword([]byte(password), s.bcryptCost())
		if err != nil {
			writeError(w, 400, "M_WEAK_PASSWORD", err.Error())
			return
		}
		hash = string(h)
	}
	userID, err := s.store.RegisterUser(r.Context(), localpart, hash, admin, displayName)
	if errors.Is(err, store.ErrUserInUse) {
		writeError(w, 400, "M_USER_IN_USE", "User ID already taken.")
		return
	}
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	token, device, err := s.store.Login(r.Context(), userID, "", "")
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	s.log.Infof("registered %s (admin: %v)", userID, admin)
	writeJSON(w, 200, map[string]any{"user_id": userID, "access_token": token, "device_id": device, "home_server": s.cfg.ServerName})
}

// bcryptCost honours Synapse's bcrypt_rounds (default 12).
func (s *Server) bcryptCost() int {
	if v, ok := s.cfg.Raw("bcrypt_rounds"); ok {
		if n, ok := v.(int); ok && n >= bcrypt.MinCost && n <= bcrypt.MaxCost {
			return n
		}
	}
	return 12
}
