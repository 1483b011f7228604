package schema

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"hsops/internal/fault"
)

// AdminAPI is a running homeserver's admin API: its base URL (of its client
// listener) and an admin's access token, with where each came from ("the
// config's listener", "HSOPS_ACCESS_TOKEN", ...), which its errors name.
type AdminAPI struct {
	URL, URLFrom     string
	Token, TokenFrom string
}

// UpdatesEnabled asks a running homeserver, through its admin API, whether
// it runs background updates; with set non-nil it first switches them on
// or off (until it restarts). server is the base URL of its client
// listener, token an admin's access token.
func UpdatesEnabled(ctx context.Context, server, token string, set *bool) (bool, error) {
	return AdminAPI{URL: server, Token: token}.UpdatesEnabled(ctx, set)
}

// UpdatesEnabled is the package function for this API.
func (a AdminAPI) UpdatesEnabled(ctx context.Context, set *bool) (bool, error) {
	url := strings.TrimRight(a.URL, "/") + "/_synapse/admin/v1/background_updates/enabled"
	var body io.Reader
	method := http.MethodGet
	if set != nil {
		method = http.MethodPost
		b, _ := json.Marshal(map[string]bool{"enabled": *set})
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return false, fault.Usagef("bad homeserver URL %q%s: %v", a.URL, from(a.URLFrom), err)
	}
	req.Header.Set("Authorization", "Bearer "+a.Token)
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return false, fault.Errorf(fault.Down, "the homeserver must be running and listening there: synctl start <config>, or name its client listener with --server URL",
			"reach the homeserver at %s%s: %w", a.URL, from(a.URLFrom), err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		var merr struct{ Errcode, Error string }
		_ = json.Unmarshal(data, &merr)
		token := "the access token"
		if a.TokenFrom != "" {
			token += " from " + a.TokenFrom
		}
		return false, fault.Errorf(fault.Rejected, tokenHint(merr.Errcode),
			"the homeserver at %s refused %s: %s %s %s", a.URL, token, resp.Status, merr.Errcode, merr.Error)
	}
	var res struct {
		Enabled bool `json:"enabled"`
	}
	if err := json.Unmarshal(data, &res); err != nil {
		return false, fmt.Errorf("read homeserver answer: %w", err)
	}
	return res.Enabled, nil
}

func from(what string) string {
	if what == "" {
		return ""
	}
	return " (" + what + ")"
}

// tokenHint says what a refused token needs.
func tokenHint(errcode string) string {
	switch errcode {
	case "M_FORBIDDEN":
		return "the token's user is not a server admin: use an admin's access token (--access-token or HSOPS_ACCESS_TOKEN)"
	case "M_UNKNOWN_TOKEN", "M_MISSING_TOKEN":
		return "the token is not valid on this homeserver: use an admin's access token (homeserver register-user -c <config> --user NAME --admin prints one)"
	}
	return "the access token must belong to a server admin"
}
