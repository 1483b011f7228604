package store

import (
	"fmt"
	"strconv"
	"strings"
	"sync"

	"hsops/internal/db"
)

// OldestVersion is the oldest schema version the store writes (the oldest
// full schema the engine ships). Version 0 means the newest.
const OldestVersion = 68

// tableID names one of the tables a batch writes (see tables).
type tableID int

const (
	tUsers tableID = iota
	tProfiles
	tDevices
	tAccessTokens
	tUserFilters
	tAccountData
	tRooms
	tEvents
	tEventJSON
	tEventEdges
	tEventAuth
	tStateGroups
	tStateGroupsState
	tStateGroupEdges
	tStateEvents
	tEventToStateGroups
	tCurrentStateEvents
	tRoomMemberships
	tLocalCurrentMembership
	tEventSearch
	tEventRelations
	tThreads
	tRedactions
	tEventTxnID
	tForwardExtremities
	tRoomDepth
	tReceipts
	tStreamPositions
	numTables
)

// column is a column of a table the store writes.
type column struct {
	name string
	// engine, when set, is the only engine whose table has the column.
	engine db.Engine
	// expr is the value's SQL expression ("?" when empty).
	expr string
}

// tableSpec describes a table: its columns in row order and, for tables
// holding one row per key (the current state of something), the key: rows
// with the same key replace each other, in a batch and in the database.
// A row has a value for every column, in this order, whatever the schema
// version: a version that lacks a column (see added) leaves it out with its
// value.
type tableSpec struct {
	name string
	cols []column
	key  []string
}

func cols(names ...string) []column {
	out := make([]column, len(names))
	for i, n := range names {
		out[i] = column{name: n}
	}
	return out
}

// tables are the tables in the order a batch writes them: a row's table
// comes after the tables its foreign keys point to.
var tables = [numTables]tableSpec{
	tUsers:        {name: "users", cols: cols("name", "password_hash", "creation_ts", "admin", "is_guest", "deactivated", "approved", "locked")},
	tProfiles:     {name: "profiles", cols: cols("user_id", "full_user_id", "displayname")},
	tDevices:      {name: "devices", cols: cols("user_id", "device_id", "display_name", "last_seen", "hidden")},
	tAccessTokens: {name: "access_tokens", cols: cols("id", "user_id", "device_id", "token", "used")},
	tUserFilters:  {name: "user_filters", cols: cols("user_id", "full_user_id", "filter_id", "filter_json")},
	tAccountData:  {name: "account_data", cols: cols("user_id", "account_data_type", "stream_id", "content", "instance_name")},
	tRooms:        {name: "rooms", cols: cols("room_id", "is_public", "creator", "room_version", "has_auth_chain_index")},
	tEvents: {name: "events", cols: cols("stream_ordering", "topological_ordering", "event_id", "type", "room_id", "content",
		"processed", "outlier", "depth", "origin_server_ts", "received_ts", "sender", "contains_url", "instance_name", "state_key")},
	tEventJSON:          {name: "event_json", cols: cols("event_id", "room_id", "internal_metadata", "json", "format_version")},
	tEventEdges:         {name: "event_edges", cols: cols("event_id", "prev_event_id", "room_id", "is_state")},
	tEventAuth:          {name: "event_auth", cols: cols("event_id", "auth_id", "room_id")},
	tStateGroups:        {name: "state_groups", cols: cols("id", "room_id", "event_id")},
	tStateGroupsState:   {name: "state_groups_state", cols: cols("state_group", "room_id", "type", "state_key", "event_id")},
	tStateGroupEdges:    {name: "state_group_edges", cols: cols("state_group", "prev_state_group")},
	tStateEvents:        {name: "state_events", cols: cols("event_id", "room_id", "type", "state_key")},
	tEventToStateGroups: {name: "event_to_state_groups", cols: cols("event_id", "state_group")},
	tCurrentStateEvents: {name: "current_state_events", cols: cols("event_id", "room_id", "type", "state_key", "membership", "event_stream_ordering"),
		key: []string{"room_id", "type", "state_key"}},
	tRoomMemberships: {name: "room_memberships", cols: cols("event_id", "user_id", "sender", "room_id", "membership", "display_name", "avatar_url", "event_stream_ordering")},
	tLocalCurrentMembership: {name: "local_current_membership", cols: cols("room_id", "user_id", "event_id", "membership", "event_stream_ordering"),
		key: []string{"user_id", "room_id"}},
	// SQLite indexes the text in an FTS table; PostgreSQL stores a
	// tsvector of it, with what orders search results. The text is given
	// twice: as "value" for the one, "vector" for the other.
	tEventSearch: {name: "event_search", cols: []column{{name: "event_id"}, {name: "room_id"}, {name: "sender"}, {name: "key"},
		{name: "value", engine: db.SQLite}, {name: "vector", engine: db.Postgres, expr: "to_tsvector('english', ?)"},
		{name: "origin_server_ts", engine: db.Postgres}, {name: "stream_ordering", engine: db.Postgres}}},
	tEventRelations: {name: "event_relations", cols: cols("event_id", "relates_to_id", "relation_type", "aggregation_key")},
	tThreads: {name: "threads", cols: cols("room_id", "thread_id", "latest_event_id", "topological_ordering", "stream_ordering"),
		key: []string{"room_id", "thread_id"}},
	tRedactions:         {name: "redactions", cols: cols("event_id", "redacts", "have_censored", "received_ts")},
	tEventTxnID:         {name: "event_txn_id_device_id", cols: cols("event_id", "room_id", "user_id", "device_id", "txn_id", "inserted_ts")},
	tForwardExtremities: {name: "event_forward_extremities", cols: cols("event_id", "room_id")},
	tRoomDepth:          {name: "room_depth", cols: cols("room_id", "min_depth")},
	tReceipts:           {name: "receipts_linearized", cols: cols("stream_id", "room_id", "receipt_type", "user_id", "event_id", "data", "instance_name")},
	tStreamPositions:    {name: "stream_positions", cols: cols("stream_name", "instance_name", "stream_id")},
}

// addition is a table ("threads") or column ("users.approved") that a
// schema version added, on both engines or only on one.
type addition struct {
	version int
	engine  db.Engine
	name    string
}

// added lists what the schema versions after OldestVersion added to the
// tables above (Synapse's deltas, which the engine's reproduce); what is
// not listed exists at every version from OldestVersion on. A batch for an
// older version leaves out what that version does not have: the rows a
// server at that version would have written. TestAdded_MatchesTheSchema
// checks this list against the schema at every version on both engines.
var added = []addition{
	{73, "", "users.approved"},
	{73, "", "threads"},
	{74, "", "current_state_events.event_stream_ordering"},
	{74, "", "room_memberships.event_stream_ordering"},
	{74, "", "local_current_membership.event_stream_ordering"},
	{74, "", "event_txn_id_device_id"},
	{76, "", "profiles.full_user_id"},
	{76, "", "user_filters.full_user_id"},
	{80, "", "users.locked"},
	// PostgreSQL's table had the column already at 68.
	{83, db.SQLite, "receipts_linearized.instance_name"},
}

// has reports whether a table or column ("table.column") exists at a
// schema version (0: the newest) on an engine.
func has(e db.Engine, version int, name string) bool {
	for _, a := range added {
		if a.name == name && (a.engine == "" || a.engine == e) {
			return version == 0 || version >= a.version
		}
	}
	return true
}

// plan is how a batch writes one table at one schema version on one
// engine: the columns it keeps (indexes into the spec) and its statements.
type plan struct {
	spec *tableSpec
	// skip is set when the table does not exist at the version.
	skip bool
	keep []int
	// maxRows is the most rows one statement carries.
	maxRows int
	engine  db.Engine

	mu      sync.Mutex
	inserts map[int]string
}

// maxParams bounds the parameters of one statement, under SQLite's limit
// (32,766) and PostgreSQL's (65,535).
const maxParams = 30000

// rowsPerStatement is how many rows one INSERT carries at most: enough
// that the per-statement cost vanishes, few enough that a statement stays
// small.
const rowsPerStatement = 256

type planKey struct {
	engine  db.Engine
	version int
}

var plans sync.Map // planKey -> *[numTables]*plan

// plansFor returns the plans of every table for an engine and version.
func plansFor(e db.Engine, version int) *[numTables]*plan {
	k := planKey{e, version}
	if p, ok := plans.Load(k); ok {
		return p.(*[numTables]*plan)
	}
	var out [numTables]*plan
	for id := range tables {
		spec := &tables[id]
		p := &plan{spec: spec, engine: e, inserts: map[int]string{}}
		p.skip = !has(e, version, spec.name)
		for i, c := range spec.cols {
			if (c.engine == "" || c.engine == e) && has(e, version, spec.name+"."+c.name) {
				p.keep = append(p.keep, i)
			}
		}
		p.maxRows = max(1, min(rowsPerStatement, maxParams/max(1, len(p.keep))))
		out[id] = p
	}
	p, _ := plans.LoadOrStore(k, &out)
	return p.(*[numTables]*plan)
}

// columns are the names of the columns the plan writes.
func (p *plan) columns() []string {
	out := make([]string, len(p.keep))
	for i, k := range p.keep {
		out[i] = p.spec.cols[k].name
	}
	return out
}

// insert is the INSERT of n rows.
func (p *plan) insert(n int) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if q, ok := p.inserts[n]; ok {
		return q
	}
	var b strings.Builder
	b.WriteString("INSERT INTO ")
	b.WriteString(p.spec.name)
	b.WriteString(" (")
	b.WriteString(strings.Join(p.columns(), ", "))
	b.WriteString(") VALUES ")
	arg := 0
	for r := 0; r < n; r++ {
		if r > 0 {
			b.WriteString(", ")
		}
		b.WriteByte('(')
		for i, k := range p.keep {
			if i > 0 {
				b.WriteString(", ")
			}
			arg++
			ph := "?"
			if p.engine == db.Postgres {
				ph = "$" + strconv.Itoa(arg)
			}
			if expr := p.spec.cols[k].expr; expr != "" {
				b.WriteString(strings.Replace(expr, "?", ph, 1))
			} else {
				b.WriteString(ph)
			}
		}
		b.WriteByte(')')
	}
	if len(p.spec.key) > 0 {
		fmt.Fprintf(&b, " ON CONFLICT (%s) DO UPDATE SET ", strings.Join(p.spec.key, ", "))
		first := true
		for _, c := range p.columns() {
			if isKey(p.spec.key, c) {
				continue
			}
			if !first {
				b.WriteString(", ")
			}
			first = false
			b.WriteString(c + " = excluded." + c)
		}
	}
	q := b.String()
	p.inserts[n] = q
	return q
}

func isKey(key []string, c string) bool {
	for _, k := range key {
		if k == c {
			return true
		}
	}
	return false
}

// keyIndexes are the positions of a keyed table's key columns in its rows.
func (s *tableSpec) keyIndexes() []int {
	var out []int
	for _, k := range s.key {
		for i, c := range s.cols {
			if c.name == k {
				out = append(out, i)
			}
		}
	}
	return out
}
