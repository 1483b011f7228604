package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"hsops/internal/cli"
	"hsops/internal/config"
	"hsops/internal/fault"
	"hsops/internal/server"
)

// newRegisterCmd is the first-admin helper, like Synapse's
// register_new_matrix_user: it registers a user on the running server with
// the config's registration_shared_secret (nonce + HMAC).
func newRegisterCmd(stdout io.Writer) *cobra.Command {
	var (
		configs        []string
		user, password string
		admin, jsonOut bool
		serverURL      string
	)
	cmd := &cobra.Command{
		Use:   "register-user -c homeserver.yaml --user NAME --password PASSWORD [--admin] [--server URL]",
		Short: "Register a user (the first admin) on the running server with the shared secret",
		Args:  cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(configs) == 0 || user == "" {
				return cli.Usagef("-c and --user are required")
			}
			if password == "" {
				password = os.Getenv("HSOPS_PASSWORD")
			}
			if password == "" {
				return cli.Usagef("a password is required: --password or HSOPS_PASSWORD")
			}
			cfg, err := config.Load(configs...)
			if err != nil {
				return err
			}
			if cfg.RegistrationSharedSecret == "" {
				return fault.Errorf(fault.Config, "add one (homeserver --generate-config writes one)", "registration_shared_secret is not set in %s", strings.Join(cfg.Files, ", "))
			}
			if serverURL == "" {
				serverURL = clientURL(cfg)
			}
			if serverURL == "" {
				return cli.Usagef("no client listener in the config: pass --server URL")
			}
			res, err := registerShared(cmd.Context(), serverURL, cfg.RegistrationSharedSecret, user, password, admin)
			if err != nil {
				return err
			}
			if jsonOut {
				return json.NewEncoder(stdout).Encode(res)
			}
			fmt.Fprintf(stdout, "registered %s (admin: %v); access token: %s\n", res["user_id"], admin, res["access_token"])
			return nil
		},
	}
	f := cmd.Flags()
	f.StringArrayVarP(&configs, "config-path", "c", nil, "the homeserver config (for the shared secret and listener)")
	f.StringVarP(&user, "user", "u", "", "localpart of the new user")
	f.StringVarP(&password, "password", "p", "", "password (or HSOPS_PASSWORD)")
	f.BoolVarP(&admin, "admin", "a", false, "make the user a server admin")
	f.StringVar(&serverURL, "server", "", "base URL of the server (default: its first client listener)")
	f.BoolVar(&jsonOut, "json", false, "print the answer as JSON")
	return cmd
}

// clientURL is the URL of the process's first listener serving the client
// API.
func clientURL(cfg *config.Config) string {
	if cfg.IsWorker() {
		return config.BaseURL(cfg.WorkerListeners)
	}
	return config.BaseURL(cfg.Listeners)
}

func registerShared(ctx context.Context, base, secret, user, password string, admin bool) (map[string]any, error) {
	client := &http.Client{Timeout: 30 * time.Second}
	url := strings.TrimRight(base, "/") + "/_synapse/admin/v1/register"
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := client.Do(req)
	if err != nil {
		return nil, fault.Errorf(fault.Down, "is it running? synctl start <config>", "reach the homeserver at %s: %w", base, err)
	}
	var nonce struct{ Nonce string }
	err = json.NewDecoder(resp.Body).Decode(&nonce)
	resp.Body.Close()
	if err != nil || nonce.Nonce == "" {
		return nil, fmt.Errorf("get a registration nonce from %s: %v (status %s)", base, err, resp.Status)
	}
	body, _ := json.Marshal(map[string]any{
		"nonce": nonce.Nonce, "username": user, "password": password, "admin": admin,
		"mac": server.RegistrationMAC(secret, nonce.Nonce, user, password, admin),
	})
	req, _ = http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err = client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, fmt.Errorf("read the answer: %w", err)
	}
	if resp.StatusCode != 200 {
		hint := ""
		switch out["errcode"] {
		case "M_USER_IN_USE":
			hint = "that user exists: choose another --user"
		case "M_FORBIDDEN", "M_UNAUTHORIZED":
			hint = "the registration_shared_secret of the config is not the running homeserver's: restart it after changing the secret"
		case "M_INVALID_USERNAME":
			hint = "user names are lower-case letters, digits and ._=-/"
		}
		return nil, fault.Errorf(fault.Rejected, hint, "registration refused: %v %v", out["errcode"], out["error"])
	}
	return out, nil
}
