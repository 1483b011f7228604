package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"hsops/internal/fault"

	"gopkg.in/yaml.v3"
)

// Sentinel errors. Callers use errors.Is to map them to exit codes.
var (
	// ErrNotFound means a configuration path does not exist.
	ErrNotFound = fault.New(fault.Config, "config file not found", "check the config path given on the command line")
	// ErrInvalid means a configuration file could not be parsed or a used
	// section holds a wrong type or value.
	ErrInvalid = fault.New(fault.Config, "invalid config", "fix <config> where the message says: nothing was changed")
	// ErrNoDatabase means neither database nor databases is configured.
	ErrNoDatabase = fault.New(fault.Config, "no database configured",
		"add a database section (name: sqlite3 or psycopg2, with its args) to <config>")
	// ErrNoName means a database section has no name and cannot be taken
	// for the default (sqlite3, which needs args.database). It comes with
	// ErrInvalid.
	ErrNoName = fault.New(fault.Config, "malformed database config: no 'name'", "add name: psycopg2 (or sqlite3) to the database section")
)

// Engine names as they appear in database.name.
const (
	EngineSQLite   = "sqlite3"
	EnginePostgres = "psycopg2"
)

// MainProcessApp is the worker_app value that means "the main process".
const MainProcessApp = "synapse.app.homeserver"

// File is one configuration document: its name (for messages) and content.
type File struct {
	Name string
	Data []byte
}

// Config is a merged homeserver configuration.
type Config struct {
	// Files are the files that were merged, in order.
	Files []string
	// Dir is the directory of the last file, Synapse's "config directory"
	// (where generated keys go); relative paths in the config are not
	// relative to it (see ResolvePaths).
	Dir string
	// Warnings are non-fatal remarks made while loading (ignored files,
	// documents that are not mappings), in Synapse's wording.
	Warnings []string

	ServerName  string
	ReportStats *bool
	PidFile     string
	Daemonize   bool
	LogConfig   string
	Listeners   []Listener

	WorkerApp       string
	WorkerName      string
	WorkerPidFile   string
	WorkerDaemonize bool
	WorkerLogConfig string
	WorkerListeners []Listener

	// Databases are the physical databases, in config order. The single-form
	// `database:` section yields one entry labelled "master".
	Databases []Database

	BackgroundUpdates BackgroundUpdates

	SynctlCacheFactor  *float64
	SynctlCacheFactors map[string]float64

	RegistrationSharedSecret string
	EnableRegistration       bool
	MacaroonSecretKey        string
	FormSecret               string
	SigningKeyPath           string
	MediaStorePath           string

	// raw holds every top-level key of the merged configuration, decoded
	// generically, with the file each came from.
	raw map[string]rawValue
}

type rawValue struct {
	node *yaml.Node
	file string
}

// Listener is one entry of listeners / worker_listeners.
type Listener struct {
	Port          int        `yaml:"port"`
	BindAddresses []string   `yaml:"bind_addresses"`
	BindAddress   string     `yaml:"bind_address"`
	Path          string     `yaml:"path"`
	Type          string     `yaml:"type"`
	TLS           bool       `yaml:"tls"`
	XForwarded    bool       `yaml:"x_forwarded"`
	Resources     []Resource `yaml:"resources"`
}

// Resource is one entry of a listener's resources.
type Resource struct {
	Names    []string `yaml:"names"`
	Compress bool     `yaml:"compress"`
}

// Addresses returns the addresses the listener binds, Synapse's defaults
// applied (both "::" and "0.0.0.0" when nothing is given).
func (l Listener) Addresses() []string {
	if len(l.BindAddresses) > 0 {
		return l.BindAddresses
	}
	if l.BindAddress != "" {
		return []string{l.BindAddress}
	}
	return []string{"::", "0.0.0.0"}
}

// HasResource reports whether the listener serves the named resource.
func (l Listener) HasResource(name string) bool {
	for _, r := range l.Resources {
		for _, n := range r.Names {
			if n == name {
				return true
			}
		}
	}
	return false
}

// BackgroundUpdates is the background_updates section, Synapse's defaults
// applied.
type BackgroundUpdates struct {
	DurationMS       int  `yaml:"background_update_duration_ms"`
	SleepEnabled     bool `yaml:"sleep_enabled"`
	SleepDurationMS  int  `yaml:"sleep_duration_ms"`
	MinBatchSize     int  `yaml:"min_batch_size"`
	DefaultBatchSize int  `yaml:"default_batch_size"`
}

// DefaultBackgroundUpdates are Synapse's defaults for the section.
func DefaultBackgroundUpdates() BackgroundUpdates {
	return BackgroundUpdates{DurationMS: 100, SleepEnabled: true, SleepDurationMS: 1000, MinBatchSize: 1, DefaultBatchSize: 100}
}

// IsWorker reports whether the configuration is for a worker process.
func (c *Config) IsWorker() bool {
	return c.WorkerApp != "" && c.WorkerApp != MainProcessApp
}

// Has reports whether the merged configuration has the top-level key.
func (c *Config) Has(key string) bool {
	_, ok := c.raw[key]
	return ok
}

// Keys returns the top-level keys of the merged configuration, sorted.
func (c *Config) Keys() []string {
	keys := make([]string, 0, len(c.raw))
	for k := range c.raw {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Raw decodes the value at a dotted path ("listeners", "metrics_flags",
// "logging.structured") generically. ok is false when the path is absent.
func (c *Config) Raw(path string) (v any, ok bool) {
	parts := strings.Split(path, ".")
	rv, found := c.raw[parts[0]]
	if !found {
		return nil, false
	}
	var top any
	if err := rv.node.Decode(&top); err != nil {
		return nil, false
	}
	cur := top
	for _, p := range parts[1:] {
		m, isMap := cur.(map[string]any)
		if !isMap {
			return nil, false
		}
		cur, found = m[p]
		if !found {
			return nil, false
		}
	}
	return cur, true
}

// Source returns the file that defined a top-level key, or "".
func (c *Config) Source(key string) string {
	return c.raw[key].file
}

// FindFiles expands the given paths into the ordered list of files to load,
// as Synapse's find_config_files does: a directory contributes its *.yaml
// files in name order (other entries are reported in warnings and skipped);
// a file is taken as given. A path that does not exist is an error.
func FindFiles(paths []string) (files []string, warnings []string, err error) {
	if len(paths) == 0 {
		return nil, nil, fmt.Errorf("%w: no config file given", ErrNotFound)
	}
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil, nil, fmt.Errorf("%w: %q", ErrNotFound, p)
			}
			return nil, nil, fmt.Errorf("read config %q: %w", p, err)
		}
		if !st.IsDir() {
			files = append(files, p)
			continue
		}
		entries, err := os.ReadDir(p)
		if err != nil {
			return nil, nil, fmt.Errorf("read config directory %q: %w", p, err)
		}
		var found []string
		for _, e := range entries {
			full := filepath.Join(p, e.Name())
			info, err := os.Stat(full)
			if err != nil || !info.Mode().IsRegular() {
				warnings = append(warnings, fmt.Sprintf("Found subdirectory in config directory: %q. IGNORING.", full))
				continue
			}
			if !strings.HasSuffix(e.Name(), ".yaml") {
				warnings = append(warnings, fmt.Sprintf("Found file in config directory that does not end in '.yaml': %q. IGNORING.", full))
				continue
			}
			found = append(found, full)
		}
		sort.Strings(found)
		files = append(files, found...)
	}
	return files, warnings, nil
}

// Load finds, reads and merges the configuration at paths, its relative
// paths made absolute against the working directory (ResolvePaths).
func Load(paths ...string) (*Config, error) {
	names, warnings, err := FindFiles(paths)
	if err != nil {
		return nil, err
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("%w: no *.yaml file in %q", ErrNotFound, strings.Join(paths, ", "))
	}
	files := make([]File, 0, len(names))
	for _, n := range names {
		data, err := os.ReadFile(n)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("%w: %q", ErrNotFound, n)
			}
			return nil, fmt.Errorf("read config %q: %w", n, err)
		}
		files = append(files, File{Name: n, Data: data})
	}
	cfg, err := Parse(files)
	if err != nil {
		return nil, err
	}
	wd, err := os.Getwd()
	if err != nil {
		return nil, fmt.Errorf("find the working directory, which relative paths in the config are relative to: %w", err)
	}
	cfg.ResolvePaths(wd)
	cfg.Warnings = append(warnings, cfg.Warnings...)
	return cfg, nil
}

// Parse merges already-read files. It is the pure part of Load.
func Parse(files []File) (*Config, error) {
	cfg := &Config{raw: map[string]rawValue{}, BackgroundUpdates: DefaultBackgroundUpdates()}
	for _, f := range files {
		cfg.Files = append(cfg.Files, f.Name)
		var doc yaml.Node
		if err := yaml.Unmarshal(f.Data, &doc); err != nil {
			return nil, fmt.Errorf("%w: %s: %s", ErrInvalid, f.Name, yamlMessage(err))
		}
		if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
			cfg.Warnings = append(cfg.Warnings, fmt.Sprintf("File %q is empty or doesn't parse into a key-value map. IGNORING.", f.Name))
			continue
		}
		m := doc.Content[0]
		for i := 0; i+1 < len(m.Content); i += 2 {
			k, v := m.Content[i], m.Content[i+1]
			if k.Kind != yaml.ScalarNode {
				return nil, fmt.Errorf("%w: %s line %d: top-level keys must be strings", ErrInvalid, f.Name, k.Line)
			}
			cfg.raw[k.Value] = rawValue{node: v, file: f.Name}
		}
	}
	if n := len(files); n > 0 {
		cfg.Dir = filepath.Dir(files[n-1].Name)
	}
	if err := cfg.decode(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// decodeKey decodes one top-level key into dst when present.
func (c *Config) decodeKey(key string, dst any) error {
	rv, ok := c.raw[key]
	if !ok || rv.node.Tag == "!!null" {
		return nil
	}
	if err := rv.node.Decode(dst); err != nil {
		return fmt.Errorf("%w: %s line %d: %q: %s", ErrInvalid, rv.file, rv.node.Line, key, yamlMessage(err))
	}
	return nil
}

func (c *Config) invalid(key, format string, args ...any) error {
	rv := c.raw[key]
	return fmt.Errorf("%w: %s line %d: %q: %s", ErrInvalid, rv.file, rv.node.Line, key, fmt.Sprintf(format, args...))
}

func (c *Config) decode() error {
	strs := []struct {
		key string
		dst *string
	}{
		{"server_name", &c.ServerName}, {"pid_file", &c.PidFile}, {"log_config", &c.LogConfig},
		{"worker_app", &c.WorkerApp}, {"worker_name", &c.WorkerName}, {"worker_pid_file", &c.WorkerPidFile},
		{"worker_log_config", &c.WorkerLogConfig}, {"registration_shared_secret", &c.RegistrationSharedSecret},
		{"macaroon_secret_key", &c.MacaroonSecretKey}, {"form_secret", &c.FormSecret},
		{"signing_key_path", &c.SigningKeyPath}, {"media_store_path", &c.MediaStorePath},
	}
	for _, s := range strs {
		if err := c.decodeKey(s.key, s.dst); err != nil {
			return err
		}
	}
	bools := []struct {
		key string
		dst *bool
	}{
		{"daemonize", &c.Daemonize}, {"worker_daemonize", &c.WorkerDaemonize}, {"enable_registration", &c.EnableRegistration},
	}
	for _, b := range bools {
		if err := c.decodeKey(b.key, b.dst); err != nil {
			return err
		}
	}
	if err := c.decodeKey("report_stats", &c.ReportStats); err != nil {
		return err
	}
	if err := c.decodeKey("listeners", &c.Listeners); err != nil {
		return err
	}
	if err := c.decodeKey("worker_listeners", &c.WorkerListeners); err != nil {
		return err
	}
	if err := c.decodeKey("background_updates", &c.BackgroundUpdates); err != nil {
		return err
	}
	if c.BackgroundUpdates.MinBatchSize < 1 {
		return c.invalid("background_updates", "min_batch_size must be greater than 0")
	}
	if c.BackgroundUpdates.DefaultBatchSize < 1 {
		return c.invalid("background_updates", "default_batch_size must be greater than 0")
	}
	if c.BackgroundUpdates.DurationMS < 1 {
		return c.invalid("background_updates", "background_update_duration_ms must be greater than 0")
	}
	if err := c.decodeKey("synctl_cache_factor", &c.SynctlCacheFactor); err != nil {
		return err
	}
	if err := c.decodeKey("synctl_cache_factors", &c.SynctlCacheFactors); err != nil {
		return err
	}
	return c.decodeDatabases()
}

// yamlMessage strips yaml.v3's "yaml: unmarshal errors:\n  " preamble so an
// error fits on one line.
func yamlMessage(err error) string {
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "yaml: unmarshal errors:\n")
	msg = strings.TrimPrefix(msg, "yaml: ")
	lines := strings.Split(msg, "\n")
	for i := range lines {
		lines[i] = strings.TrimSpace(lines[i])
	}
	return strings.Join(lines, "; ")
}

// BaseURL is the URL of the first HTTP listener on a TCP port that serves
// the client API (no resources listed, or "client" among them), else of the
// first HTTP listener at all; "" when there is none. A wildcard address is
// reached on loopback.
func BaseURL(ls []Listener) string {
	var first *Listener
	for i, l := range ls {
		if (l.Type != "http" && l.Type != "") || l.Port == 0 {
			continue
		}
		if len(l.Resources) == 0 || l.HasResource("client") {
			return listenerURL(l)
		}
		if first == nil {
			first = &ls[i]
		}
	}
	if first != nil {
		return listenerURL(*first)
	}
	return ""
}

func listenerURL(l Listener) string {
	host := "127.0.0.1"
	for _, a := range l.Addresses() {
		switch a {
		case "::", "0.0.0.0":
		case "::1":
			if len(l.Addresses()) == 1 {
				host = "[::1]"
			}
			continue
		default:
			if strings.Contains(a, ":") {
				host = "[" + a + "]"
			} else {
				host = a
			}
		}
		break
	}
	return "http://" + host + ":" + strconv.Itoa(l.Port)
}
