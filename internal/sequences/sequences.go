// Package sequences knows the PostgreSQL sequences of a homeserver
// database, the tables whose ids they hand out, and the consistency rule
// Synapse checks at start-up: a sequence must not be behind its tables nor
// behind the stream positions recorded for its stream.
package sequences

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"hsops/internal/db"
	"hsops/internal/fault"
)

// ErrInconsistent means a sequence is behind its table or stream position.
var ErrInconsistent = fault.New(fault.Version, "postgres sequence is inconsistent",
	"stop every process using the database and run the SQL given above")

// Source is a column whose values a sequence hands out.
type Source struct {
	Table, Column string
}

// Sequence describes one sequence.
type Sequence struct {
	Name    string
	Sources []Source
	// Stream names the stream in stream_positions, if any.
	Stream string
	// Negative: the sequence hands out -value (backfilled events).
	Negative bool
	// Floor is the lowest value to restart at when the tables are empty
	// (Synapse's multi-writer streams start at 2).
	Floor int64
}

// Known are the sequences Synapse v1.98 checks at start-up, plus those its
// porter sets (spec 1.8 and 7.4).
var Known = []Sequence{
	{Name: "state_group_id_seq", Sources: []Source{{"state_groups", "id"}}},
	{Name: "events_stream_seq", Sources: []Source{{"events", "stream_ordering"}}, Stream: "events"},
	{Name: "events_backfill_stream_seq", Sources: []Source{{"events", "stream_ordering"}}, Stream: "backfill", Negative: true},
	{Name: "event_auth_chain_id", Sources: []Source{{"event_auth_chains", "chain_id"}}},
	{Name: "application_services_txn_id_seq", Sources: []Source{{"application_services_txns", "txn_id"}}, Floor: 2},
	{Name: "account_data_sequence", Sources: []Source{{"room_account_data", "stream_id"}, {"room_tags_revisions", "stream_id"}, {"account_data", "stream_id"}}, Stream: "account_data", Floor: 2},
	{Name: "cache_invalidation_stream_seq", Sources: []Source{{"cache_invalidation_stream_by_instance", "stream_id"}}, Stream: "caches"},
	{Name: "device_inbox_sequence", Sources: []Source{{"device_inbox", "stream_id"}, {"device_federation_outbox", "stream_id"}}, Stream: "to_device", Floor: 2},
	{Name: "presence_stream_sequence", Sources: []Source{{"presence_stream", "stream_id"}}, Stream: "presence_stream", Floor: 2},
	{Name: "receipts_sequence", Sources: []Source{{"receipts_linearized", "stream_id"}}, Stream: "receipts", Floor: 2},
	{Name: "un_partial_stated_event_stream_sequence", Sources: []Source{{"un_partial_stated_event_stream", "stream_id"}}, Stream: "un_partial_stated_event_stream", Floor: 2},
	{Name: "un_partial_stated_room_stream_sequence", Sources: []Source{{"un_partial_stated_room_stream", "stream_id"}}, Stream: "un_partial_stated_room_stream", Floor: 2},
}

// State is a sequence as it stands in a database.
type State struct {
	Sequence
	// Exists is false when the database has no such sequence.
	Exists bool
	// LastValue is the last value handed out (is_called taken into account).
	LastValue int64
	// TableMax is the highest value in the tables (for Negative: -MIN).
	TableMax int64
	// StreamMax is the highest stream position recorded (0 when none).
	StreamMax int64
}

// Behind reports whether the sequence would hand out a value already used.
func (s State) Behind() bool {
	return s.Exists && (s.TableMax > s.LastValue || s.StreamMax > s.LastValue)
}

// Needed is the value the sequence must have handed out at least.
func (s State) Needed() int64 { return max(s.TableMax, s.StreamMax) }

func exists(ctx context.Context, q db.Querier, kind, name string) (bool, error) {
	var n int
	var query string
	if kind == "sequence" {
		query = "SELECT count(*) FROM pg_class WHERE relkind = 'S' AND relname = $1 AND relnamespace = current_schema()::regnamespace"
	} else {
		query = "SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = $1"
	}
	err := q.QueryRowContext(ctx, query, name).Scan(&n)
	return n > 0, err
}

// TableMax computes a sequence's table maximum (GREATEST(MAX(col), 0), or
// for negative streams GREATEST(-MIN(col), 0)) on either engine, skipping
// tables the database lacks.
func TableMax(ctx context.Context, d *db.DB, q db.Querier, s Sequence) (int64, error) {
	var best int64
	for _, src := range s.Sources {
		ok, err := d.TableExists(ctx, q, src.Table)
		if err != nil {
			return 0, err
		}
		if !ok {
			continue
		}
		agg := "MAX(" + src.Column + ")"
		if s.Negative {
			agg = "-MIN(" + src.Column + ")"
		}
		var v sql.NullInt64
		if err := q.QueryRowContext(ctx, "SELECT "+agg+" FROM "+src.Table).Scan(&v); err != nil {
			return 0, fmt.Errorf("max of %s.%s: %w", src.Table, src.Column, err)
		}
		if v.Valid && v.Int64 > best {
			best = v.Int64
		}
	}
	return best, nil
}

// StreamMax returns the highest stream_positions entry of a stream.
func StreamMax(ctx context.Context, d *db.DB, q db.Querier, stream string) (int64, error) {
	if stream == "" {
		return 0, nil
	}
	ok, err := d.TableExists(ctx, q, "stream_positions")
	if err != nil || !ok {
		return 0, err
	}
	var v sql.NullInt64
	err = q.QueryRowContext(ctx, d.Rebind("SELECT MAX(stream_id) FROM stream_positions WHERE stream_name = ?"), stream).Scan(&v)
	return v.Int64, err
}

// Read returns the state of every known sequence of a PostgreSQL database.
func Read(ctx context.Context, d *db.DB, q db.Querier) ([]State, error) {
	var out []State
	for _, s := range Known {
		st := State{Sequence: s}
		ok, err := exists(ctx, q, "sequence", s.Name)
		if err != nil {
			return nil, err
		}
		st.Exists = ok
		if ok {
			var last int64
			var called bool
			if err := q.QueryRowContext(ctx, "SELECT last_value, is_called FROM "+s.Name).Scan(&last, &called); err != nil {
				return nil, fmt.Errorf("read sequence %s: %w", s.Name, err)
			}
			if !called {
				last--
			}
			st.LastValue = last
		}
		if st.TableMax, err = TableMax(ctx, d, q, s); err != nil {
			return nil, err
		}
		if st.StreamMax, err = StreamMax(ctx, d, q, s.Stream); err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}

// Check applies Synapse's start-up rule to every known sequence and
// describes each one that is behind, with the SQL that fixes it.
func Check(ctx context.Context, d *db.DB) error {
	if d.Engine != db.Postgres {
		return nil
	}
	states, err := Read(ctx, d, d)
	if err != nil {
		return err
	}
	var bad []string
	for _, s := range states {
		if s.Behind() {
			bad = append(bad, fmt.Sprintf("%s is at %d but %d is in use (fix: SELECT setval('%s', %d))", s.Name, s.LastValue, s.Needed(), s.Name, s.Needed()))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("%w: %s", ErrInconsistent, strings.Join(bad, "; "))
	}
	return nil
}

// Advance moves every known sequence of a PostgreSQL database that is
// behind its tables or streams to the value in use, as a writer that
// bypassed the sequences (a bulk loader) must. It returns the names moved.
func Advance(ctx context.Context, d *db.DB) ([]string, error) {
	if d.Engine != db.Postgres {
		return nil, nil
	}
	states, err := Read(ctx, d, d)
	if err != nil {
		return nil, err
	}
	var moved []string
	for _, s := range states {
		if !s.Behind() {
			continue
		}
		if _, err := d.ExecContext(ctx, "SELECT setval($1, $2, true)", s.Name, s.Needed()); err != nil {
			return moved, fmt.Errorf("set sequence %s: %w", s.Name, err)
		}
		moved = append(moved, s.Name)
	}
	return moved, nil
}

// Lookup returns the known sequence of that name.
func Lookup(name string) (Sequence, bool) {
	for _, s := range Known {
		if s.Name == name {
			return s, true
		}
	}
	return Sequence{}, false
}
