package load

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"hsops/internal/fault"
)

// Login is a user to log in as.
type Login struct {
	User, Password string
}

// ErrBadLogin means a login is not user:password.
var ErrBadLogin = errors.New("want user:password")

// ParseLogin reads "localpart:password" or "@user:server:password" (split
// at the last colon, since the user ID has one).
func ParseLogin(s string) (Login, error) {
	i := strings.Index(s, ":")
	if strings.HasPrefix(s, "@") {
		i = strings.LastIndex(s, ":")
	}
	if i <= 0 {
		return Login{}, fmt.Errorf("%q: %w", s, ErrBadLogin)
	}
	return Login{User: s[:i], Password: s[i+1:]}, nil
}

// CheckParams say whom to check as and what to expect.
type CheckParams struct {
	URL    string
	Tokens []string
	Logins []Login
	// Search is a word to search for as the first user ("": none).
	Search string
	// Send posts a message as the first user, into its first room.
	Send bool
	// Expect is the number of messages that must be readable (-1: any).
	Expect int
}

// CheckReport is what a check found.
type CheckReport struct {
	Users    int    `json:"users"`
	Rooms    int    `json:"rooms"`
	Messages int    `json:"messages"`
	Digest   string `json:"digest"`
	Search   string `json:"search,omitempty"`
	Hits     int    `json:"hits"`
	Sent     string `json:"sent,omitempty"`
}

// ErrCheckFailed means the homeserver answered, but not as expected.
var ErrCheckFailed = fault.New(fault.Failed, "check failed", "")

// Check reads, as the given users, every message of every room they
// joined, and digests them (event IDs, senders and bodies). The report
// is returned also when an expectation fails (ErrCheckFailed).
func Check(ctx context.Context, p CheckParams) (*CheckReport, error) {
	c := &client{base: strings.TrimRight(p.URL, "/"), http: &http.Client{Timeout: 60 * time.Second}}
	tokens := append([]string{}, p.Tokens...)
	for _, lg := range p.Logins {
		var out struct {
			AccessToken string `json:"access_token"`
		}
		if err := c.do(ctx, "POST", "/_matrix/client/v3/login", "", map[string]any{
			"type": "m.login.password", "identifier": map[string]any{"type": "m.id.user", "user": lg.User}, "password": lg.Password,
		}, &out); err != nil {
			return nil, fmt.Errorf("log in as %s: %w", lg.User, err)
		}
		tokens = append(tokens, out.AccessToken)
	}
	if len(tokens) == 0 {
		return nil, fmt.Errorf("a check needs at least one token or login")
	}
	rep := &CheckReport{Users: len(tokens)}
	rooms, messages, firstRoom, err := c.readAll(ctx, tokens)
	if err != nil {
		return nil, err
	}
	rep.Rooms, rep.Messages = rooms, len(messages)
	rep.Digest = digest(messages)
	if p.Search != "" {
		var out struct {
			Categories struct {
				RoomEvents struct {
					Count int `json:"count"`
				} `json:"room_events"`
			} `json:"search_categories"`
		}
		if err := c.do(ctx, "POST", "/_matrix/client/v3/search", tokens[0], map[string]any{
			"search_categories": map[string]any{"room_events": map[string]any{"search_term": p.Search}},
		}, &out); err != nil {
			return rep, fmt.Errorf("search: %w", err)
		}
		rep.Search, rep.Hits = p.Search, out.Categories.RoomEvents.Count
		if rep.Hits == 0 {
			return rep, fmt.Errorf("%w: search %q found nothing: the search index is empty or not ported", ErrCheckFailed, p.Search)
		}
	}
	if p.Send {
		if firstRoom == "" {
			return rep, fmt.Errorf("%w: the first user is in no room to send to", ErrCheckFailed)
		}
		var out struct {
			EventID string `json:"event_id"`
		}
		txn := fmt.Sprintf("check-%d", time.Now().UnixNano())
		if err := c.do(ctx, "PUT", "/_matrix/client/v3/rooms/"+url.PathEscape(firstRoom)+"/send/m.room.message/"+txn, tokens[0],
			map[string]any{"msgtype": "m.text", "body": "check " + txn}, &out); err != nil {
			return rep, fmt.Errorf("send: %w", err)
		}
		rep.Sent = out.EventID
	}
	if p.Expect >= 0 && rep.Messages != p.Expect {
		return rep, fmt.Errorf("%w: %d messages are readable, expected %d", ErrCheckFailed, rep.Messages, p.Expect)
	}
	return rep, nil
}

// readAll pages forward through every room each user joined (once per
// room) and returns the number of rooms, the m.room.message events by ID
// ("sender body") and the first user's first room.
func (c *client) readAll(ctx context.Context, tokens []string) (int, map[string]string, string, error) {
	rooms := map[string]bool{}
	messages := map[string]string{}
	var firstRoom string
	for ti, tok := range tokens {
		var joined struct {
			Rooms []string `json:"joined_rooms"`
		}
		if err := c.do(ctx, "GET", "/_matrix/client/v3/joined_rooms", tok, nil, &joined); err != nil {
			return 0, nil, "", fmt.Errorf("joined_rooms: %w", err)
		}
		for _, room := range joined.Rooms {
			if ti == 0 && firstRoom == "" {
				firstRoom = room
			}
			if rooms[room] {
				continue
			}
			rooms[room] = true
			if err := c.readRoom(ctx, tok, room, messages); err != nil {
				return 0, nil, "", err
			}
		}
	}
	return len(rooms), messages, firstRoom, nil
}

// readRoom pages forward through a room's timeline.
func (c *client) readRoom(ctx context.Context, token, room string, messages map[string]string) error {
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
		if err := c.do(ctx, "GET", u, token, nil, &page); err != nil {
			return fmt.Errorf("messages of %s: %w", room, err)
		}
		for _, ev := range page.Chunk {
			if ev.Type == "m.room.message" {
				body, _ := json.Marshal(ev.Content["body"])
				messages[ev.EventID] = ev.Sender + " " + string(body)
			}
		}
		if page.End == "" {
			return nil
		}
		from = page.End
	}
}

// digest is the first 16 hex digits of the SHA-256 of the messages, one
// "id sender body" line each, sorted by event ID.
func digest(messages map[string]string) string {
	ids := make([]string, 0, len(messages))
	for id := range messages {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	h := sha256.New()
	for _, id := range ids {
		fmt.Fprintf(h, "%s %s\n", id, messages[id])
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}
