package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
)

// CheckJoined refuses a user who is not joined to the room.
func (s *Store) CheckJoined(ctx context.Context, userID, room string) error {
	return s.requireJoined(ctx, userID, room)
}

// StateEvent reads the content of one current state event of a room, for
// a joined member.
func (s *Store) StateEvent(ctx context.Context, userID, room, typ, key string) (json.RawMessage, error) {
	if err := s.requireJoined(ctx, userID, room); err != nil {
		return nil, err
	}
	var content sql.NullString
	err := s.DB.QueryRowContext(ctx, s.q(`SELECT e.content FROM current_state_events AS c JOIN events AS e ON e.event_id = c.event_id
		WHERE c.room_id = ? AND c.type = ? AND c.state_key = ?`), room, typ, key).Scan(&content)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: Event not found", ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	return json.RawMessage(content.String), nil
}

// Member is a joined member's profile in a room.
type Member struct {
	DisplayName *string `json:"display_name"`
	AvatarURL   *string `json:"avatar_url"`
}

// JoinedMembers lists a room's joined members with the profile of their
// membership event, for a joined member.
func (s *Store) JoinedMembers(ctx context.Context, userID, room string) (map[string]Member, error) {
	if err := s.requireJoined(ctx, userID, room); err != nil {
		return nil, err
	}
	rows, err := s.DB.QueryContext(ctx, s.q(`SELECT c.state_key, m.display_name, m.avatar_url FROM current_state_events AS c
		JOIN room_memberships AS m ON m.event_id = c.event_id
		WHERE c.room_id = ? AND c.type = 'm.room.member' AND c.membership = 'join'`), room)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]Member{}
	for rows.Next() {
		var user string
		var name, avatar sql.NullString
		if err := rows.Scan(&user, &name, &avatar); err != nil {
			return nil, err
		}
		var m Member
		if name.Valid {
			m.DisplayName = &name.String
		}
		if avatar.Valid {
			m.AvatarURL = &avatar.String
		}
		out[user] = m
	}
	return out, rows.Err()
}
