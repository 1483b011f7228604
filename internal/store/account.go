package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"hsops/internal/db"
	"hsops/internal/notifier"
)

// Profile is a user's displayname and avatar_url ("" when unset).
type Profile struct {
	DisplayName string
	AvatarURL   string
}

// Profile reads a local user's profile.
func (s *Store) Profile(ctx context.Context, userID string) (Profile, error) {
	local, ok := s.Localpart(userID)
	if !ok {
		return Profile{}, fmt.Errorf("%w: Profile was not found", ErrNotFound)
	}
	var name, avatar sql.NullString
	err := s.DB.QueryRowContext(ctx, s.q("SELECT displayname, avatar_url FROM profiles WHERE user_id = ?"), local).Scan(&name, &avatar)
	if errors.Is(err, sql.ErrNoRows) {
		return Profile{}, fmt.Errorf("%w: Profile was not found", ErrNotFound)
	}
	return Profile{DisplayName: name.String, AvatarURL: avatar.String}, err
}

// SetProfile sets a user's displayname or avatar_url (field), as Synapse
// does: the profiles row (keyed by the localpart, with full_user_id), then
// a new join event with the new profile in every room the user is joined
// to. It returns the rooms it updated.
func (s *Store) SetProfile(ctx context.Context, u User, field, value string) ([]string, error) {
	local, ok := s.Localpart(u.ID)
	if !ok {
		return nil, fmt.Errorf("%w: cannot set the profile of a remote user", ErrForbidden)
	}
	col := map[string]string{"displayname": "displayname", "avatar_url": "avatar_url"}[field]
	if col == "" {
		return nil, fmt.Errorf("%w: unknown profile field %q", ErrNotFound, field)
	}
	err := s.Tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, s.q(`INSERT INTO profiles (user_id, full_user_id, `+col+`) VALUES (?, ?, ?)
			ON CONFLICT (user_id) DO UPDATE SET `+col+` = excluded.`+col+`, full_user_id = excluded.full_user_id`), local, u.ID, nullString(value))
		return err
	})
	if err != nil {
		return nil, err
	}
	rooms, err := s.JoinedRooms(ctx, u.ID)
	if err != nil {
		return nil, err
	}
	for _, room := range rooms {
		if err := s.refreshMember(ctx, u, room); err != nil {
			return nil, err
		}
	}
	return rooms, nil
}

// refreshMember sends a join event carrying the user's current profile.
func (s *Store) refreshMember(ctx context.Context, u User, room string) error {
	unlock := s.roomLock(room)
	defer unlock()
	return s.Tx(ctx, func(tx *sql.Tx) error {
		m, err := s.Membership(ctx, tx, u.ID, room)
		if err != nil || m != "join" {
			return err
		}
		p, err := s.profileIn(ctx, tx, u.ID)
		if err != nil {
			return err
		}
		content := map[string]any{"membership": "join"}
		if p.DisplayName != "" {
			content["displayname"] = p.DisplayName
		}
		if p.AvatarURL != "" {
			content["avatar_url"] = p.AvatarURL
		}
		auth, err := s.authFor(ctx, tx, room, u.ID)
		if err != nil {
			return err
		}
		e := &Event{RoomID: room, Type: "m.room.member", Sender: u.ID, StateKey: Str(u.ID), Content: content, OriginServerTS: now(), AuthEvents: auth}
		if err := s.Persist(ctx, tx, e); err != nil {
			return err
		}
		s.wakeAfter(tx, notifier.RoomKey(room))
		return nil
	})
}

func (s *Store) profileIn(ctx context.Context, q db.Querier, userID string) (Profile, error) {
	local, _ := s.Localpart(userID)
	var name, avatar sql.NullString
	err := q.QueryRowContext(ctx, s.q("SELECT displayname, avatar_url FROM profiles WHERE user_id = ?"), local).Scan(&name, &avatar)
	if errors.Is(err, sql.ErrNoRows) {
		err = nil
	}
	return Profile{DisplayName: name.String, AvatarURL: avatar.String}, err
}

// AddFilter stores a filter (canonical JSON) for a local user as Synapse
// does: the id of an identical filter when there is one, else one past the
// user's highest (the first is 0).
func (s *Store) AddFilter(ctx context.Context, userID string, filter []byte) (int64, error) {
	local, ok := s.Localpart(userID)
	if !ok {
		return 0, fmt.Errorf("%w: Can only create filters for local users", ErrForbidden)
	}
	// One filter at a time: two would take the same id. Not s.mu, which a
	// login takes inside its transaction.
	s.filterMu.Lock()
	defer s.filterMu.Unlock()
	var id int64
	err := s.Tx(ctx, func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, s.q("SELECT filter_id FROM user_filters WHERE user_id = ? AND filter_json = ?"), local, filter).Scan(&id)
		if err == nil || !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		if err := tx.QueryRowContext(ctx, s.q("SELECT COALESCE(MAX(filter_id) + 1, 0) FROM user_filters WHERE user_id = ?"), local).Scan(&id); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, s.q("INSERT INTO user_filters (user_id, full_user_id, filter_id, filter_json) VALUES (?, ?, ?, ?)"), local, userID, id, filter)
		return err
	})
	return id, err
}

// Filter reads a user's filter.
func (s *Store) Filter(ctx context.Context, userID string, id int64) ([]byte, error) {
	local, _ := s.Localpart(userID)
	var data []byte
	err := s.DB.QueryRowContext(ctx, s.q("SELECT filter_json FROM user_filters WHERE user_id = ? AND filter_id = ?"), local, id).Scan(&data)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: No such filter", ErrNotFound)
	}
	return data, err
}

// SetAccountData stores global (room "") or per-room account data, with
// the next id of account_data_sequence, and wakes the user's syncs.
func (s *Store) SetAccountData(ctx context.Context, userID, room, typ string, content json.RawMessage) error {
	return s.Tx(ctx, func(tx *sql.Tx) error {
		return s.setAccountData(ctx, tx, userID, room, typ, content)
	})
}

func (s *Store) setAccountData(ctx context.Context, tx *sql.Tx, userID, room, typ string, content json.RawMessage) error {
	id, err := s.nextID(ctx, tx, streamAccountData)
	if err != nil {
		return err
	}
	if room == "" {
		_, err = tx.ExecContext(ctx, s.q(`INSERT INTO account_data (user_id, account_data_type, stream_id, content, instance_name) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (user_id, account_data_type) DO UPDATE SET stream_id = excluded.stream_id, content = excluded.content, instance_name = excluded.instance_name`),
			userID, typ, id, string(content), s.Instance)
	} else {
		_, err = tx.ExecContext(ctx, s.q(`INSERT INTO room_account_data (user_id, room_id, account_data_type, stream_id, content, instance_name) VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT (user_id, room_id, account_data_type) DO UPDATE SET stream_id = excluded.stream_id, content = excluded.content, instance_name = excluded.instance_name`),
			userID, room, typ, id, string(content), s.Instance)
	}
	if err != nil {
		return fmt.Errorf("store account data: %w", err)
	}
	s.wakeAfter(tx, notifier.UserKey(userID))
	return nil
}

// AccountData reads global (room "") or per-room account data.
func (s *Store) AccountData(ctx context.Context, userID, room, typ string) (json.RawMessage, error) {
	var content string
	var err error
	if room == "" {
		err = s.DB.QueryRowContext(ctx, s.q("SELECT content FROM account_data WHERE user_id = ? AND account_data_type = ?"), userID, typ).Scan(&content)
	} else {
		err = s.DB.QueryRowContext(ctx, s.q("SELECT content FROM room_account_data WHERE user_id = ? AND room_id = ? AND account_data_type = ?"), userID, room, typ).Scan(&content)
	}
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: Account data not found", ErrNotFound)
	}
	return json.RawMessage(content), err
}

// Tags reads a user's tags on a room (tag -> content).
func (s *Store) Tags(ctx context.Context, userID, room string) (map[string]json.RawMessage, error) {
	return s.tagsIn(ctx, s.DB, userID, room)
}

func (s *Store) tagsIn(ctx context.Context, q db.Querier, userID, room string) (map[string]json.RawMessage, error) {
	rows, err := q.QueryContext(ctx, s.q("SELECT tag, content FROM room_tags WHERE user_id = ? AND room_id = ?"), userID, room)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]json.RawMessage{}
	for rows.Next() {
		var tag, content string
		if err := rows.Scan(&tag, &content); err != nil {
			return nil, err
		}
		out[tag] = json.RawMessage(content)
	}
	return out, rows.Err()
}

// SetTag adds (content non-nil) or removes a tag, and moves the room's
// room_tags_revisions row to the next account data id.
func (s *Store) SetTag(ctx context.Context, userID, room, tag string, content json.RawMessage) error {
	return s.Tx(ctx, func(tx *sql.Tx) error {
		var err error
		if content != nil {
			_, err = tx.ExecContext(ctx, s.q(`INSERT INTO room_tags (user_id, room_id, tag, content) VALUES (?, ?, ?, ?)
				ON CONFLICT (user_id, room_id, tag) DO UPDATE SET content = excluded.content`), userID, room, tag, string(content))
		} else {
			_, err = tx.ExecContext(ctx, s.q("DELETE FROM room_tags WHERE user_id = ? AND room_id = ? AND tag = ?"), userID, room, tag)
		}
		if err != nil {
			return fmt.Errorf("store tag: %w", err)
		}
		id, err := s.nextID(ctx, tx, streamAccountData)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO room_tags_revisions (user_id, room_id, stream_id, instance_name) VALUES (?, ?, ?, ?)
			ON CONFLICT (user_id, room_id) DO UPDATE SET stream_id = excluded.stream_id, instance_name = excluded.instance_name`), userID, room, id, s.Instance); err != nil {
			return fmt.Errorf("store tag revision: %w", err)
		}
		s.wakeAfter(tx, notifier.UserKey(userID))
		return nil
	})
}

// eventPosition is the stream ordering of an event of a room.
func (s *Store) eventPosition(ctx context.Context, q db.Querier, room, eventID string) (int64, error) {
	var so int64
	err := q.QueryRowContext(ctx, s.q("SELECT stream_ordering FROM events WHERE event_id = ? AND room_id = ?"), eventID, room).Scan(&so)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("%w: Unknown event %s in room %s", ErrNotFound, eventID, room)
	}
	return so, err
}

// SetReceipt records a receipt (m.read, m.read.private) of a joined user,
// as Synapse's receipts store does: receipts_linearized (one row per room,
// type, user and thread, with the next receipts_sequence id, the event's
// stream ordering and this instance) and receipts_graph. A receipt for an
// event older than the one already recorded is ignored. threadID is "" for
// an unthreaded receipt (thread_id NULL).
func (s *Store) SetReceipt(ctx context.Context, u User, room, typ, eventID, threadID string) error {
	if err := s.requireJoined(ctx, u.ID, room); err != nil {
		return err
	}
	return s.Tx(ctx, func(tx *sql.Tx) error {
		return s.setReceipt(ctx, tx, u, room, typ, eventID, threadID)
	})
}

func (s *Store) setReceipt(ctx context.Context, tx *sql.Tx, u User, room, typ, eventID, threadID string) error {
	so, err := s.eventPosition(ctx, tx, room, eventID)
	if err != nil {
		return err
	}
	thread := "thread_id IS NULL"
	args := []any{room, typ, u.ID}
	if threadID != "" {
		thread = "thread_id = ?"
		args = append(args, threadID)
	}
	var prev sql.NullInt64
	err = tx.QueryRowContext(ctx, s.q(`SELECT r.event_stream_ordering FROM receipts_linearized AS r
		WHERE r.room_id = ? AND r.receipt_type = ? AND r.user_id = ? AND r.`+thread), args...).Scan(&prev)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	if prev.Valid && prev.Int64 >= so {
		return nil
	}
	id, err := s.nextID(ctx, tx, streamReceipts)
	if err != nil {
		return err
	}
	data, _ := json.Marshal(map[string]any{"ts": now()})
	for _, tbl := range []string{"receipts_linearized", "receipts_graph"} {
		if _, err := tx.ExecContext(ctx, s.q("DELETE FROM "+tbl+" WHERE room_id = ? AND receipt_type = ? AND user_id = ? AND "+thread), args...); err != nil {
			return err
		}
	}
	if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO receipts_linearized (stream_id, room_id, receipt_type, user_id, event_id, data, instance_name, event_stream_ordering, thread_id)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`), id, room, typ, u.ID, eventID, string(data), s.Instance, so, nullString(threadID)); err != nil {
		return fmt.Errorf("store receipt: %w", err)
	}
	ids, _ := json.Marshal([]string{eventID})
	if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO receipts_graph (room_id, receipt_type, user_id, event_ids, data, thread_id) VALUES (?, ?, ?, ?, ?, ?)`),
		room, typ, u.ID, string(ids), string(data), nullString(threadID)); err != nil {
		return fmt.Errorf("store receipt: %w", err)
	}
	s.wakeAfter(tx, notifier.RoomKey(room))
	return nil
}

// SetReadMarkers moves the fully-read marker (m.fully_read room account
// data, forward only) and the read receipts given, in one transaction.
func (s *Store) SetReadMarkers(ctx context.Context, u User, room, fullyRead string, receipts map[string]string) error {
	if err := s.requireJoined(ctx, u.ID, room); err != nil {
		return err
	}
	return s.Tx(ctx, func(tx *sql.Tx) error {
		if fullyRead != "" {
			so, err := s.eventPosition(ctx, tx, room, fullyRead)
			if err != nil {
				return err
			}
			var old string
			err = tx.QueryRowContext(ctx, s.q("SELECT content FROM room_account_data WHERE user_id = ? AND room_id = ? AND account_data_type = 'm.fully_read'"), u.ID, room).Scan(&old)
			if err != nil && !errors.Is(err, sql.ErrNoRows) {
				return err
			}
			var prev struct {
				EventID string `json:"event_id"`
			}
			_ = json.Unmarshal([]byte(old), &prev)
			newer := true
			if prev.EventID != "" {
				if pso, err := s.eventPosition(ctx, tx, room, prev.EventID); err == nil && pso >= so {
					newer = false
				}
			}
			if newer {
				content, _ := json.Marshal(map[string]string{"event_id": fullyRead})
				if err := s.setAccountData(ctx, tx, u.ID, room, "m.fully_read", content); err != nil {
					return err
				}
			}
		}
		for _, typ := range []string{"m.read", "m.read.private"} {
			if ev := receipts[typ]; ev != "" {
				if err := s.setReceipt(ctx, tx, u, room, typ, ev, ""); err != nil {
					return err
				}
			}
		}
		return nil
	})
}
