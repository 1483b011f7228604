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

// UpdatesEnabled asks a running homeserver, through its admin API, whether
// it runs background updates; with set non-nil it first switches them on
// or off (until it restarts). server is the base URL of its client
// listener, token an admin's access token.
func UpdatesEnabled(ctx context.Context, server, token string, set *bool) (bool, error) {
	url := strings.TrimRight(server, "/") + "/_synapse/admin/v1/background_updates/enabled"
	var body io.Reader
	method := http.MethodGet
	if set != nil {
		method = http.MethodPost
		b, _ := json.Marshal(map[string]bool{"enabled": *set})
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return false, fault.Usagef("bad --server: %v", err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return false, fault.Errorf(fault.Down, "check --server: the homeserver must be running and listening there", "reach the homeserver: %w", err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		var merr struct{ Errcode, Error string }
		_ = json.Unmarshal(data, &merr)
		return false, fault.Errorf(fault.Rejected, "the access token must belong to a server admin", "homeserver answered %s: %s %s", resp.Status, merr.Errcode, merr.Error)
	}
	var res struct {
		Enabled bool `json:"enabled"`
	}
	if err := json.Unmarshal(data, &res); err != nil {
		return false, fmt.Errorf("read homeserver answer: %w", err)
	}
	return res.Enabled, nil
}
