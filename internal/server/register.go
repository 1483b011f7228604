package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"hsops/internal/config"
	"hsops/internal/fault"
)

// ClientURL is the base URL of the process's first HTTP listener ("" when
// it has none).
func ClientURL(cfg *config.Config) string {
	if cfg.IsWorker() {
		return config.BaseURL(cfg.WorkerListeners)
	}
	return config.BaseURL(cfg.Listeners)
}

// RegisterShared registers a user on the running homeserver at base with
// the shared secret (nonce, then HMAC), as Synapse's
// register_new_matrix_user does, and returns the server's answer (user_id,
// access_token, ...).
func RegisterShared(ctx context.Context, base, secret, user, password string, admin bool) (map[string]any, error) {
	client := &http.Client{Timeout: 30 * time.Second}
	url := strings.TrimRight(base, "/") + "/_synapse/admin/v1/register"
	nonce, err := registrationNonce(ctx, client, base, url)
	if err != nil {
		return nil, err
	}
	body, _ := json.Marshal(map[string]any{
		"nonce": nonce, "username": user, "password": password, "admin": admin,
		"mac": RegistrationMAC(secret, nonce, user, password, admin),
	})
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, fmt.Errorf("read the answer: %w", err)
	}
	if resp.StatusCode != 200 {
		return nil, fault.Errorf(fault.Rejected, registrationHint(out["errcode"]), "registration refused: %v %v", out["errcode"], out["error"])
	}
	return out, nil
}

func registrationNonce(ctx context.Context, client *http.Client, base, url string) (string, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := client.Do(req)
	if err != nil {
		return "", fault.Errorf(fault.Down, "is it running? synctl start <config>", "reach the homeserver at %s: %w", base, err)
	}
	var nonce struct{ Nonce string }
	err = json.NewDecoder(resp.Body).Decode(&nonce)
	resp.Body.Close()
	if err != nil || nonce.Nonce == "" {
		return "", fmt.Errorf("get a registration nonce from %s: %v (status %s)", base, err, resp.Status)
	}
	return nonce.Nonce, nil
}

func registrationHint(errcode any) string {
	switch errcode {
	case "M_USER_IN_USE":
		return "that user exists: choose another --user"
	case "M_FORBIDDEN", "M_UNAUTHORIZED":
		return "the registration_shared_secret of the config is not the running homeserver's: restart it after changing the secret"
	case "M_INVALID_USERNAME":
		return "user names are lower-case letters, digits and ._=-/"
	}
	return ""
}
