package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"hsops/internal/cli"
	"hsops/internal/load"
)

func newCheckCmd(ctx context.Context, stdout io.Writer) *cobra.Command {
	var (
		p       load.CheckParams
		configs []string
		logins  []string
		asJSON  bool
	)
	cmd := &cobra.Command{
		Use:   "check (--url URL | --config homeserver.yaml) (--token T | --login user:password)... [--expect-messages N] [--search WORD] [--send]",
		Short: "Read every message a homeserver's users can see, through the client API, and summarise it",
		Long: `check logs in (or uses the access tokens given), lists the rooms each user has
joined, and pages forward through every room's timeline with /messages. It
prints how many rooms and distinct messages (m.room.message events) the users
can read, and a digest of their event IDs, senders and bodies: the same
digest before and after an upgrade, a port or a rollback means every message
is intact. --search runs a search as the first user and counts the hits (none
fails the check: pick a word the messages hold); --send posts a message as
the first user (into its first room). With --expect-messages the check fails
unless exactly that many messages are readable.`,
		Args: cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := fromConfig(configs, &p.URL, nil); err != nil {
				return err
			}
			if len(p.Tokens)+len(logins) == 0 {
				return cli.Usagef("give at least one --token or --login")
			}
			for _, s := range logins {
				lg, err := load.ParseLogin(s)
				if err != nil {
					return cli.Usagef("--login %v", err)
				}
				p.Logins = append(p.Logins, lg)
			}
			rep, err := load.Check(ctx, p)
			if rep != nil {
				if asJSON {
					cli.NewJSONLines(stdout).Emit(rep)
				} else {
					printCheck(stdout, rep)
				}
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&p.URL, "url", "", "the homeserver's client API base URL")
	f.StringArrayVarP(&configs, "config", "c", nil, "homeserver config to read --url from")
	f.StringArrayVar(&p.Tokens, "token", nil, "access token of a user to check as (repeatable)")
	f.StringArrayVar(&logins, "login", nil, "localpart:password or @user:server:password to log in as (repeatable)")
	f.StringVar(&p.Search, "search", "", "a word to search for")
	f.BoolVar(&p.Send, "send", false, "send a message as the first user")
	f.IntVar(&p.Expect, "expect-messages", -1, "fail unless exactly this many messages are readable")
	f.BoolVar(&asJSON, "json", false, "print the report as JSON")
	return cmd
}

func printCheck(w io.Writer, r *load.CheckReport) {
	fmt.Fprintf(w, "%d users see %d rooms and %d messages (digest %s)\n", r.Users, r.Rooms, r.Messages, r.Digest)
	if r.Search != "" {
		fmt.Fprintf(w, "search %q: %d hits\n", r.Search, r.Hits)
	}
	if r.Sent != "" {
		fmt.Fprintf(w, "sent %s\n", r.Sent)
	}
}
