package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"hsops/internal/cli"
	"hsops/internal/config"
	"hsops/internal/fault"
	"hsops/internal/server"
)

// newRegisterCmd is the first-admin helper, like Synapse's
// register_new_matrix_user: it registers a user on the running server with
// the config's registration_shared_secret (nonce + HMAC).
func newRegisterCmd(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	var (
		configs        []string
		user, password string
		admin, jsonOut bool
		serverURL      string
	)
	cmd := &cobra.Command{
		Use:   "register-user -c homeserver.yaml --user NAME [--password PASSWORD] [--admin] [--server URL]",
		Short: "Register a user (the first admin) on the running server with the shared secret",
		Long: `register-user registers a user on the running server with the config's
registration_shared_secret, as Synapse's register_new_matrix_user does. The
password is --password, else HSOPS_PASSWORD, else asked twice on the
terminal without echo.`,
		Args: cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(configs) == 0 || user == "" {
				return cli.Usagef("-c and --user are required")
			}
			if password == "" {
				password = os.Getenv("HSOPS_PASSWORD")
			}
			if password == "" && !cli.IsTerminal(stdin) {
				return cli.Usagef("a password is required: --password or HSOPS_PASSWORD (on a terminal it is asked for)")
			}
			cfg, err := config.Load(configs...)
			if err != nil {
				return err
			}
			if cfg.RegistrationSharedSecret == "" {
				return fault.Errorf(fault.Config, "add one (homeserver --generate-config writes one)", "registration_shared_secret is not set in %s", strings.Join(cfg.Files, ", "))
			}
			if serverURL == "" {
				serverURL = server.ClientURL(cfg)
			}
			if serverURL == "" {
				return cli.Usagef("no client listener in the config: pass --server URL")
			}
			if password == "" {
				if password, err = askPassword(stdin.(*os.File), stderr); err != nil {
					return err
				}
			}
			res, err := server.RegisterShared(cmd.Context(), serverURL, cfg.RegistrationSharedSecret, user, password, admin)
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

// askPassword asks for the password twice on the terminal, without echo,
// as register_new_matrix_user does (getpass).
func askPassword(tty *os.File, prompt io.Writer) (string, error) {
	read := func(label string) (string, error) {
		fmt.Fprint(prompt, label)
		b, err := term.ReadPassword(int(tty.Fd()))
		fmt.Fprintln(prompt)
		if err != nil {
			return "", fmt.Errorf("read the password: %w", err)
		}
		return string(b), nil
	}
	password, err := read("Password: ")
	if err != nil {
		return "", err
	}
	if password == "" {
		return "", cli.Usagef("the password cannot be blank")
	}
	confirm, err := read("Confirm password: ")
	if err != nil {
		return "", err
	}
	if password != confirm {
		return "", cli.Usagef("the passwords do not match")
	}
	return password, nil
}
