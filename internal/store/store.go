// Package store is the engine's data access: it reads and writes the
// homeserver tables the way Synapse does (users and tokens, rooms, events
// with their JSON, edges, state groups, memberships, current state, search,
// stream orderings), on SQLite and PostgreSQL.
//
// Event rows have one writer, Batch: Persist (the client API's path)
// resolves an event from the database and writes it as a batch of one;
// the generator (internal/gen) resolves thousands in memory and writes
// them in large batches. A batch writes for a schema version (OldestVersion
// to the newest), leaving out what that version lacks (tables.go).
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
	"hsops/internal/notifier"
	"hsops/internal/sequences"
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
	// DB hosts the main and state logical databases (the engine refuses to
	// serve them from two databases).
	DB         *db.DB
	ServerName string
	// Instance is the writer's name ("master" or the worker name).
	Instance string

	mu        sync.Mutex
	lastToken int64
	// rooms are the room write locks (see roomLock).
	rooms [256]sync.Mutex

	// Notifier is woken when a transaction of Tx commits something a
	// /sync may wait for.
	Notifier *notifier.Notifier
	streams  streams
	typing   *typing
	unreadMu sync.Mutex
	unread   map[[2]string]unreadCache
	filterMu sync.Mutex
}

// New returns a store over an open database.
func New(d *db.DB, serverName, instance string) *Store {
	return &Store{DB: d, ServerName: serverName, Instance: instance, Notifier: notifier.New(),
		streams: streams{trackers: map[string]*tracker{}, txs: map[*sql.Tx]*txState{}}, typing: newTyping(), unread: map[[2]string]unreadCache{}}
}

// nextID hands out the next value of one of Synapse's sequences
// (sequences.Known), as its id generators do: nextval on PostgreSQL
// (negated for the backfill stream); on SQLite, where BEGIN IMMEDIATE
// serialises the writers, one past the table's extreme read in the
// transaction, so a rolled-back transaction leaves nothing to forget.
func (s *Store) nextID(ctx context.Context, tx *sql.Tx, name string) (int64, error) {
	seq, ok := sequences.Lookup(name)
	if !ok || len(seq.Sources) == 0 {
		return 0, fmt.Errorf("no sequence %s", name)
	}
	sign := int64(1)
	if seq.Negative {
		sign = -1
	}
	n, err := s.nextSeq(ctx, tx, seq, sign)
	if err == nil {
		s.allocated(tx, name, n)
	}
	return n, err
}

func (s *Store) nextSeq(ctx context.Context, tx *sql.Tx, seq sequences.Sequence, sign int64) (int64, error) {
	var n int64
	if s.DB.Engine == db.Postgres {
		err := tx.QueryRowContext(ctx, "SELECT nextval('"+seq.Name+"')").Scan(&n)
		return sign * n, err
	}
	// Every table the sequence numbers (account data: three of them).
	var parts []string
	for _, src := range seq.Sources {
		agg := "MAX(" + src.Column + ")"
		if seq.Negative {
			agg = "-MIN(" + src.Column + ")"
		}
		parts = append(parts, "SELECT "+agg+" AS m FROM "+src.Table)
	}
	err := tx.QueryRowContext(ctx, "SELECT COALESCE(MAX(m), 0) + 1 FROM ("+strings.Join(parts, " UNION ALL ")+" UNION ALL SELECT 0) AS t").Scan(&n)
	return sign * n, err
}

// nextTokenID hands out an access_tokens id. The table has no sequence: on
// SQLite the maximum is read in the (serialised) transaction; on
// PostgreSQL a counter started from the maximum is only ever advanced, so
// ids of rolled-back transactions are skipped, never handed out twice.
// Only the main process writes tokens.
func (s *Store) nextTokenID(ctx context.Context, tx *sql.Tx) (int64, error) {
	var m int64
	if s.DB.Engine == db.SQLite {
		err := tx.QueryRowContext(ctx, "SELECT COALESCE(MAX(id), 0) + 1 FROM access_tokens").Scan(&m)
		return m, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lastToken == 0 {
		if err := tx.QueryRowContext(ctx, "SELECT COALESCE(MAX(id), 0) FROM access_tokens").Scan(&m); err != nil {
			return 0, err
		}
		s.lastToken = m
	}
	s.lastToken++
	return s.lastToken, nil
}

// Tx runs fn in a transaction on the main database. The stream ids it
// hands out are tracked until it ends (see Position), and the listeners it
// names are woken once it commits.
func (s *Store) Tx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.DB.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	s.beginTracking(tx)
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		s.endTracking(tx, false)
		return err
	}
	err = tx.Commit()
	s.endTracking(tx, err == nil)
	return err
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
		adminFlag := 0
		if admin {
			adminFlag = 1
		}
		// ON CONFLICT, not a count first: two registrations of one name
		// at once must give one user and one M_USER_IN_USE, not an error.
		res, err := tx.ExecContext(ctx, s.q(`INSERT INTO users (name, password_hash, creation_ts, admin, is_guest, deactivated, approved, locked)
			VALUES (?, ?, ?, ?, 0, 0, ?, ?) ON CONFLICT (name) DO NOTHING`), userID, nullString(passwordHash), time.Now().Unix(), adminFlag, true, false)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			if err == nil {
				err = ErrUserInUse
			}
			return err
		}
		if displayName == "" {
			displayName = localpart
		}
		_, err = tx.ExecContext(ctx, s.q("INSERT INTO profiles (user_id, full_user_id, displayname) VALUES (?, ?, ?)"), localpart, userID, displayName)
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
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO devices (user_id, device_id, display_name, last_seen, hidden) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (user_id, device_id) DO NOTHING`), userID, deviceID, nullString(displayName), time.Now().UnixMilli(), false); err != nil {
			return err
		}
		id, err := s.nextTokenID(ctx, tx)
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
