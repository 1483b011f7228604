package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"hsops/internal/cli"
)

// checkParams say whom to check as and what to expect.
type checkParams struct {
	URL    string
	Tokens []string
	Logins []string
	Search string
	Send   bool
	Expect int
}

// checkReport is what a check found.
type checkReport struct {
	Users    int    `json:"users"`
	Rooms    int    `json:"rooms"`
	Messages int    `json:"messages"`
	Digest   string `json:"digest"`
	Search   string `json:"search,omitempty"`
	Hits     int    `json:"hits"`
	Sent     string `json:"sent,omitempty"`
}

func newCheckCmd(ctx context.Context, stdout io.Writer) *cobra.Command {
	var (
		p       checkParams
		configs []string
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
is intact. --search runs a search as the first user and counts the hits (none fails
the check, exit 4: pick a word the messages hold);
--send posts a message as the first user (into its first room). With
--expect-messages the check fails (exit 4) unless exactly that many messages
are readable.`,
		Args: cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := fromConfig(configs, &p.URL, nil); err != nil {
				return err
			}
			if len(p.Tokens)+len(p.Logins) == 0 {
				return cli.Usagef("give at least one --token or --login")
			}
			rep, err := runCheck(ctx, p)
			if rep != nil {
				if asJSON {
					cli.NewJSONLines(stdout).Emit(rep)
				} else {
					fmt.Fprintf(stdout, "%d users see %d rooms and %d messages (digest %s)\n", rep.Users, rep.Rooms, rep.Messages, rep.Digest)
					if rep.Search != "" {
						fmt.Fprintf(stdout, "search %q: %d hits\n", rep.Search, rep.Hits)
					}
					if rep.Sent != "" {
						fmt.Fprintf(stdout, "sent %s\n", rep.Sent)
					}
				}
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&p.URL, "url", "", "the homeserver's client API base URL")
	f.StringArrayVarP(&configs, "config", "c", nil, "homeserver config to read --url from")
	f.StringArrayVar(&p.Tokens, "token", nil, "access token of a user to check as (repeatable)")
	f.StringArrayVar(&p.Logins, "login", nil, "localpart:password or @user:server:password to log in as (repeatable)")
	f.StringVar(&p.Search, "search", "", "a word to search for")
	f.BoolVar(&p.Send, "send", false, "send a message as the first user")
	f.IntVar(&p.Expect, "expect-messages", -1, "fail unless exactly this many messages are readable")
	f.BoolVar(&asJSON, "json", false, "print the report as JSON")
	return cmd
}

func runCheck(ctx context.Context, p checkParams) (*checkReport, error) {
	l := &loader{base: strings.TrimRight(p.URL, "/"), client: &http.Client{Timeout: 60 * time.Second}}
	tokens := append([]string{}, p.Tokens...)
	for _, lg := range p.Logins {
		// "localpart:password", or "@user:server:password" (split at the
		// last colon, since the user ID has one).
		i := strings.Index(lg, ":")
		if strings.HasPrefix(lg, "@") {
			i = strings.LastIndex(lg, ":")
		}
		user, password, ok := lg[:max(i, 0)], lg[i+1:], i > 0
		if !ok {
			return nil, cli.Usagef("--login %q: want user:password", lg)
		}
		var out struct {
			AccessToken string `json:"access_token"`
		}
		if err := l.do(ctx, "POST", "/_matrix/client/v3/login", "", map[string]any{
			"type": "m.login.password", "identifier": map[string]any{"type": "m.id.user", "user": user}, "password": password,
		}, &out); err != nil {
			return nil, fmt.Errorf("log in as %s: %w", user, err)
		}
		tokens = append(tokens, out.AccessToken)
	}
	rep := &checkReport{Users: len(tokens)}
	rooms := map[string]bool{}
	messages := map[string]string{}
	var firstRoom string
	for ti, tok := range tokens {
		var joined struct {
			Rooms []string `json:"joined_rooms"`
		}
		if err := l.do(ctx, "GET", "/_matrix/client/v3/joined_rooms", tok, nil, &joined); err != nil {
			return nil, fmt.Errorf("joined_rooms: %w", err)
		}
		for _, room := range joined.Rooms {
			if ti == 0 && firstRoom == "" {
				firstRoom = room
			}
			if rooms[room] {
				continue
			}
			rooms[room] = true
			from := ""
			for {
				u := "/_matrix/client/v3/rooms/" + url.PathEscape(room) + "/messages?dir=f&limit=500"
				if from != "" {
					u += "&from=" + url.QueryEscape(from)
				}
				var page struct {
					Chunk []struct {
						EventID string         `json:"event_id"`
						Type    string         `json:"type"`
						Sender  string         `json:"sender"`
						Content map[string]any `json:"content"`
					} `json:"chunk"`
					End string `json:"end"`
				}
				if err := l.do(ctx, "GET", u, tok, nil, &page); err != nil {
					return nil, fmt.Errorf("messages of %s: %w", room, err)
				}
				for _, ev := range page.Chunk {
					if ev.Type == "m.room.message" {
						body, _ := json.Marshal(ev.Content["body"])
						messages[ev.EventID] = ev.Sender + " " + string(body)
					}
				}
				if page.End == "" {
					break
				}
				from = page.End
			}
		}
	}
	rep.Rooms, rep.Messages = len(rooms), len(messages)
	ids := make([]string, 0, len(messages))
	for id := range messages {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	h := sha256.New()
	for _, id := range ids {
		fmt.Fprintf(h, "%s %s\n", id, messages[id])
	}
	rep.Digest = hex.EncodeToString(h.Sum(nil))[:16]
	if p.Search != "" && len(tokens) > 0 {
		var out struct {
			Categories struct {
				RoomEvents struct {
					Count int `json:"count"`
				} `json:"room_events"`
			} `json:"search_categories"`
		}
		if err := l.do(ctx, "POST", "/_matrix/client/v3/search", tokens[0], map[string]any{
			"search_categories": map[string]any{"room_events": map[string]any{"search_term": p.Search}},
		}, &out); err != nil {
			return rep, fmt.Errorf("search: %w", err)
		}
		rep.Search, rep.Hits = p.Search, out.Categories.RoomEvents.Count
		if rep.Hits == 0 {
			return rep, fmt.Errorf("%w: search %q found nothing: the search index is empty or not ported", errLoadFailed, p.Search)
		}
	}
	if p.Send {
		if firstRoom == "" {
			return rep, fmt.Errorf("%w: the first user is in no room to send to", errLoadFailed)
		}
		var out struct {
			EventID string `json:"event_id"`
		}
		txn := fmt.Sprintf("check-%d", time.Now().UnixNano())
		if err := l.do(ctx, "PUT", "/_matrix/client/v3/rooms/"+url.PathEscape(firstRoom)+"/send/m.room.message/"+txn, tokens[0],
			map[string]any{"msgtype": "m.text", "body": "check " + txn}, &out); err != nil {
			return rep, fmt.Errorf("send: %w", err)
		}
		rep.Sent = out.EventID
	}
	if p.Expect >= 0 && rep.Messages != p.Expect {
		return rep, fmt.Errorf("%w: %d messages are readable, expected %d", errLoadFailed, rep.Messages, p.Expect)
	}
	return rep, nil
}
