package config

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Database is one physical database of the configuration.
type Database struct {
	// Label is "master" for the single-form database section, otherwise the
	// key under databases.
	Label string
	// Name is the engine: "sqlite3" or "psycopg2".
	Name string
	// Args are the driver arguments. For psycopg2 they are libpq keywords;
	// keys starting with "cp_" configure Synapse's connection pool and are not
	// passed to the driver. Never print Args: use String.
	Args map[string]string
	// DataStores are the logical databases this physical database hosts.
	DataStores []string
	// AllowUnsafeLocale lets an existing PostgreSQL database with a non-C
	// collation or ctype be used.
	AllowUnsafeLocale bool
	// TxnLimit reconnects after that many transactions; 0 means never.
	TxnLimit int
	// StatementTimeoutMS is PostgreSQL's statement_timeout; 0 means the
	// default of one hour.
	StatementTimeoutMS int
	// SynchronousCommit is PostgreSQL's synchronous_commit; default true.
	SynchronousCommit bool
	// File and Line locate the section for messages.
	File string
	Line int
}

// IsSQLite reports whether the database is a SQLite file.
func (d Database) IsSQLite() bool { return d.Name == EngineSQLite }

// IsPostgres reports whether the database is PostgreSQL.
func (d Database) IsPostgres() bool { return d.Name == EnginePostgres }

// SQLitePath returns args.database for a SQLite database.
func (d Database) SQLitePath() string { return d.Args["database"] }

// Hosts reports whether the database hosts the logical database name.
func (d Database) Hosts(store string) bool {
	for _, s := range d.DataStores {
		if s == store {
			return true
		}
	}
	return false
}

// DBName returns the PostgreSQL database name (dbname or database).
func (d Database) DBName() string {
	if v := d.Args["dbname"]; v != "" {
		return v
	}
	return d.Args["database"]
}

// String describes the database without its password, for messages.
func (d Database) String() string {
	if d.IsSQLite() {
		return fmt.Sprintf("sqlite3 database %q", d.SQLitePath())
	}
	host := d.Args["host"]
	if host == "" {
		host = "localhost"
	}
	s := "postgresql://"
	if u := d.Args["user"]; u != "" {
		s += u + "@"
	}
	s += host
	if p := d.Args["port"]; p != "" {
		s += ":" + p
	}
	return s + "/" + d.DBName()
}

// GoString keeps %#v from printing the password.
func (d Database) GoString() string { return "config.Database{" + d.String() + "}" }

// MainDatabase returns the physical database hosting "main".
func (c *Config) MainDatabase() (Database, error) {
	return c.DatabaseFor("main")
}

// DatabaseFor returns the physical database hosting a logical database.
func (c *Config) DatabaseFor(store string) (Database, error) {
	if len(c.Databases) == 0 {
		return Database{}, ErrNoDatabase
	}
	for _, d := range c.Databases {
		if d.Hosts(store) {
			return d, nil
		}
	}
	return Database{}, fmt.Errorf("%w: no %q database configured", ErrInvalid, store)
}

// dbSection is the raw shape of a database section.
type dbSection struct {
	Name              string         `yaml:"name"`
	Args              map[string]any `yaml:"args"`
	DataStores        []string       `yaml:"data_stores"`
	AllowUnsafeLocale bool           `yaml:"allow_unsafe_locale"`
	TxnLimit          int            `yaml:"txn_limit"`
	StatementTimeout  int            `yaml:"statement_timeout"`
	SynchronousCommit *bool          `yaml:"synchronous_commit"`
}

func (c *Config) decodeDatabases() error {
	single, hasSingle := c.raw["database"]
	multi, hasMulti := c.raw["databases"]
	if hasSingle && single.node.Tag == "!!null" {
		hasSingle = false
	}
	if hasMulti && multi.node.Tag == "!!null" {
		hasMulti = false
	}
	if hasSingle && hasMulti {
		return fmt.Errorf("%w: %s: can't specify both 'database' and 'databases' in config", ErrInvalid, multi.file)
	}
	if c.Has("database_path") && hasMulti {
		return fmt.Errorf("%w: %s: can't specify 'database_path' with 'databases'", ErrInvalid, multi.file)
	}
	switch {
	case hasSingle:
		d, err := decodeDatabase("database", "master", single)
		if err != nil {
			return err
		}
		d.DataStores = []string{"main", "state"}
		c.Databases = []Database{d}
	case hasMulti:
		if multi.node.Kind != yaml.MappingNode {
			return fmt.Errorf("%w: %s line %d: \"databases\" must be a mapping of name to database", ErrInvalid, multi.file, multi.node.Line)
		}
		seen := map[string]string{}
		for i := 0; i+1 < len(multi.node.Content); i += 2 {
			label := multi.node.Content[i].Value
			d, err := decodeDatabase("databases."+label, label, rawValue{node: multi.node.Content[i+1], file: multi.file})
			if err != nil {
				return err
			}
			for _, s := range d.DataStores {
				if s != "main" && s != "state" {
					return fmt.Errorf("%w: %s line %d: databases.%s: unknown data store %q", ErrInvalid, d.File, d.Line, label, s)
				}
				if prev, dup := seen[s]; dup {
					return fmt.Errorf("%w: %s: %q data store already configured (by %q and %q)", ErrInvalid, multi.file, s, prev, label)
				}
				seen[s] = label
			}
			c.Databases = append(c.Databases, d)
		}
		for _, s := range []string{"main", "state"} {
			if _, ok := seen[s]; !ok {
				return fmt.Errorf("%w: %s: no %q database configured", ErrInvalid, multi.file, s)
			}
		}
	case c.Has("database_path"):
		var p string
		if err := c.decodeKey("database_path", &p); err != nil {
			return err
		}
		c.Databases = []Database{{Label: "master", Name: EngineSQLite, Args: map[string]string{"database": p},
			DataStores: []string{"main", "state"}, SynchronousCommit: true, File: c.raw["database_path"].file}}
	}
	return nil
}

// decodeDatabase decodes one database section. Values are never quoted in
// errors, so a password cannot leak through a type error.
func decodeDatabase(key, label string, rv rawValue) (Database, error) {
	where := func(n *yaml.Node) string { return fmt.Sprintf("%s line %d", rv.file, n.Line) }
	if rv.node.Kind != yaml.MappingNode {
		return Database{}, fmt.Errorf("%w: %s: %q must be a mapping with 'name' and 'args'", ErrInvalid, where(rv.node), key)
	}
	for i := 0; i+1 < len(rv.node.Content); i += 2 {
		k, v := rv.node.Content[i], rv.node.Content[i+1]
		switch k.Value {
		case "args":
			if v.Kind != yaml.MappingNode && v.Tag != "!!null" {
				return Database{}, fmt.Errorf("%w: %s: %q must be a mapping", ErrInvalid, where(v), key+".args")
			}
			for j := 0; j+1 < len(v.Content); j += 2 {
				if v.Content[j+1].Kind != yaml.ScalarNode {
					return Database{}, fmt.Errorf("%w: %s: %q must be a string or a number", ErrInvalid, where(v.Content[j+1]), key+".args."+v.Content[j].Value)
				}
			}
		case "name", "data_stores", "allow_unsafe_locale", "txn_limit", "statement_timeout", "synchronous_commit":
			var err error
			switch k.Value {
			case "name":
				err = v.Decode(new(string))
			case "data_stores":
				err = v.Decode(new([]string))
			case "allow_unsafe_locale", "synchronous_commit":
				err = v.Decode(new(bool))
			default:
				err = v.Decode(new(int))
			}
			if err != nil {
				return Database{}, fmt.Errorf("%w: %s: %q has the wrong type (%s)", ErrInvalid, where(v), key+"."+k.Value, kindName(k.Value))
			}
		}
	}
	var s dbSection
	if err := rv.node.Decode(&s); err != nil {
		return Database{}, fmt.Errorf("%w: %s: %q could not be read", ErrInvalid, where(rv.node), key)
	}
	d := Database{
		Label: label, Name: s.Name, Args: map[string]string{}, DataStores: s.DataStores,
		AllowUnsafeLocale: s.AllowUnsafeLocale, TxnLimit: s.TxnLimit, StatementTimeoutMS: s.StatementTimeout,
		SynchronousCommit: true, File: rv.file, Line: rv.node.Line,
	}
	if s.SynchronousCommit != nil {
		d.SynchronousCommit = *s.SynchronousCommit
	}
	named := d.Name != ""
	if !named {
		d.Name = EngineSQLite
	}
	if d.Name != EngineSQLite && d.Name != EnginePostgres {
		return Database{}, fmt.Errorf("%w: %s: unsupported database type %q (use sqlite3 or psycopg2)", ErrInvalid, where(rv.node), d.Name)
	}
	if len(d.DataStores) == 0 {
		d.DataStores = []string{"main", "state"}
	}
	keys := make([]string, 0, len(s.Args))
	for k := range s.Args {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		d.Args[k] = scalarString(s.Args[k])
	}
	if !named && d.SQLitePath() == "" {
		return Database{}, fmt.Errorf("%w: %w: %s: %q needs name: psycopg2 or name: sqlite3", ErrInvalid, ErrNoName, where(rv.node), key)
	}
	if d.IsSQLite() && d.SQLitePath() == "" {
		return Database{}, fmt.Errorf("%w: %s: %q needs args.database (the path of the SQLite file)", ErrInvalid, where(rv.node), key)
	}
	return d, nil
}

func kindName(key string) string {
	switch key {
	case "data_stores":
		return "want a list of strings"
	case "allow_unsafe_locale", "synchronous_commit":
		return "want true or false"
	case "name":
		return "want a string"
	}
	return "want an integer"
}

func scalarString(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case int:
		return strconv.Itoa(x)
	case bool:
		return strconv.FormatBool(x)
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	default:
		return strings.TrimSpace(fmt.Sprint(x))
	}
}
