// Package store is the engine's data access: it reads and writes the
// homeserver tables the way Synapse does (users and tokens, rooms, events
// with their JSON, edges, state groups, memberships, current state, search,
// stream orderings), on SQLite and PostgreSQL.
package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"hsops/internal/db"
)

// Errors the API layer maps to Matrix error codes.
var (
	ErrUserInUse    = errors.New("user ID already taken")
	ErrUnknownToken = errors.New("unrecognised access token")
	ErrNotFound     = errors.New("not found")
	ErrForbidden    = errors.New("forbidden")
)

// Store reads and writes one homeserver's data.
type Store struct {
	// DB hosts the main logical database; State hosts state (often the
	// same database).
	DB         *db.DB
	State      *db.DB
	ServerName string
	// Instance is the writer's name ("master" or the worker name).
	Instance string

	mu  sync.Mutex
	ids map[string]int64
	// rooms holds a *sync.Mutex per room (see roomLock).
	rooms sync.Map
}

// New returns a store over open databases.
func New(main, state *db.DB, serverName, instance string) *Store {
	if state == nil {
		state = main
	}
	return &Store{DB: main, State: state, ServerName: serverName, Instance: instance, ids: map[string]int64{}}
}

// nextID hands out the next value of a table's integer id on SQLite, or of
// a sequence on PostgreSQL, the way Synapse's id generators do. On SQLite
// the counter starts after the table's current maximum.
func (s *Store) nextID(ctx context.Context, q db.Querier, d *db.DB, seq, table, col string) (int64, error) {
	if d.Engine == db.Postgres && seq != "" {
		var n int64
		err := q.QueryRowContext(ctx, "SELECT nextval('"+seq+"')").Scan(&n)
		return n, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	key := table + "." + col
	cur, ok := s.ids[key]
	if !ok {
		var m sql.NullInt64
		if err := q.QueryRowContext(ctx, "SELECT MAX("+col+") FROM "+table).Scan(&m); err != nil {
			return 0, err
		}
		cur = m.Int64
	}
	cur++
	s.ids[key] = cur
	return cur, nil
}

// forgetIDs drops cached counters (after a failed transaction, the
// database's maximum is the truth again).
func (s *Store) forgetIDs() {
	s.mu.Lock()
	s.ids = map[string]int64{}
	s.mu.Unlock()
}

// Tx runs fn in a transaction on the main database.
func (s *Store) Tx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.DB.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		s.forgetIDs()
		return err
	}
	if err := tx.Commit(); err != nil {
		s.forgetIDs()
		return err
	}
	return nil
}

func (s *Store) q(query string) string { return s.DB.Rebind(query) }

// UserID renders a local user ID.
func (s *Store) UserID(localpart string) string { return "@" + localpart + ":" + s.ServerName }

// Localpart returns the localpart of a local user ID.
func (s *Store) Localpart(userID string) (string, bool) {
	if !strings.HasPrefix(userID, "@") || !strings.HasSuffix(userID, ":"+s.ServerName) {
		return "", false
	}
	return strings.TrimSuffix(strings.TrimPrefix(userID, "@"), ":"+s.ServerName), true
}

// User is an authenticated user.
type User struct {
	ID       string
	Admin    bool
	DeviceID string
	TokenID  int64
}

// RegisterUser creates a user with a profile. passwordHash may be empty.
func (s *Store) RegisterUser(ctx context.Context, localpart, passwordHash string, admin bool, displayName string) (string, error) {
	userID := s.UserID(localpart)
	err := s.Tx(ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, s.q("SELECT count(*) FROM users WHERE name = ?"), userID).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return ErrUserInUse
		}
		adminFlag := 0
		if admin {
			adminFlag = 1
		}
		now := time.Now()
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO users (name, password_hash, creation_ts, admin, is_guest, deactivated, approved, locked)
			VALUES (?, ?, ?, ?, 0, 0, ?, ?)`), userID, nullString(passwordHash), now.Unix(), adminFlag, true, false); err != nil {
			return err
		}
		if displayName == "" {
			displayName = localpart
		}
		_, err := tx.ExecContext(ctx, s.q("INSERT INTO profiles (user_id, full_user_id, displayname) VALUES (?, ?, ?)"), localpart, userID, displayName)
		return err
	})
	return userID, err
}

// PasswordHash returns a user's password hash ("" when none).
func (s *Store) PasswordHash(ctx context.Context, userID string) (string, error) {
	var h sql.NullString
	var deactivated int
	err := s.DB.QueryRowContext(ctx, s.q("SELECT password_hash, deactivated FROM users WHERE name = ?"), userID).Scan(&h, &deactivated)
	if err == sql.ErrNoRows {
		return "", ErrNotFound
	}
	if err != nil {
		return "", err
	}
	if deactivated != 0 {
		return "", ErrForbidden
	}
	return h.String, nil
}

// Login creates a device (when new) and an access token for it.
func (s *Store) Login(ctx context.Context, userID, deviceID, displayName string) (token, device string, err error) {
	if deviceID == "" {
		deviceID = randomString(10, true)
	}
	token = "syt_" + randomString(32, false)
	err = s.Tx(ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, s.q("SELECT count(*) FROM devices WHERE user_id = ? AND device_id = ?"), userID, deviceID).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			if _, err := tx.ExecContext(ctx, s.q("INSERT INTO devices (user_id, device_id, display_name, last_seen, hidden) VALUES (?, ?, ?, ?, ?)"),
				userID, deviceID, nullString(displayName), time.Now().UnixMilli(), false); err != nil {
				return err
			}
		}
		id, err := s.nextID(ctx, tx, s.DB, "", "access_tokens", "id")
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, s.q("INSERT INTO access_tokens (id, user_id, device_id, token, used) VALUES (?, ?, ?, ?, ?)"), id, userID, deviceID, token, false)
		return err
	})
	return token, deviceID, err
}

// UserByToken authenticates an access token.
func (s *Store) UserByToken(ctx context.Context, token string) (User, error) {
	var (
		u      User
		device sql.NullString
		admin  int
		locked any
	)
	err := s.DB.QueryRowContext(ctx, s.q(`SELECT t.id, t.user_id, t.device_id, u.admin, u.locked FROM access_tokens AS t
		JOIN users AS u ON u.name = t.user_id WHERE t.token = ? AND u.deactivated = 0`), token).Scan(&u.TokenID, &u.ID, &device, &admin, &locked)
	if err == sql.ErrNoRows {
		return User{}, ErrUnknownToken
	}
	if err != nil {
		return User{}, err
	}
	if db.Truthy(locked) {
		return User{}, ErrForbidden
	}
	u.DeviceID = device.String
	u.Admin = admin != 0
	return u, nil
}

// Logout deletes an access token.
func (s *Store) Logout(ctx context.Context, tokenID int64) error {
	_, err := s.DB.ExecContext(ctx, s.q("DELETE FROM access_tokens WHERE id = ?"), tokenID)
	return err
}

func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// randomString returns n random letters (upper-case only when upper).
func randomString(n int, upper bool) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	out := make([]byte, n)
	for i, c := range b {
		if upper {
			out[i] = alphabet[int(c)%26]
		} else {
			out[i] = alphabet[int(c)%len(alphabet)]
		}
	}
	return string(out)
}

// RandomToken returns a URL-safe random string of n bytes of entropy.
func RandomToken(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// CheckServerName refuses a database whose users belong to another server
// (Synapse's start-up consistency check).
func (s *Store) CheckServerName(ctx context.Context) error {
	var name string
	err := s.DB.QueryRowContext(ctx, "SELECT name FROM users LIMIT 1").Scan(&name)
	if err == sql.ErrNoRows {
		return nil
	}
	if err != nil {
		return err
	}
	if i := strings.Index(name, ":"); i >= 0 && name[i+1:] != s.ServerName {
		return fmt.Errorf("found users in database not native to %s (for example %s): you cannot change a server_name after it's been configured", s.ServerName, name)
	}
	return nil
}
