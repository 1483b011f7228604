package cutover

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"time"

	"gopkg.in/yaml.v3"

	"hsops/internal/config"
	"hsops/internal/fault"
	"hsops/internal/writable"
)

// ErrConfigEdit is a config whose database section cannot be rewritten
// safely by a program; nothing was changed.
var ErrConfigEdit = fault.New(fault.Config, "the config's database section cannot be rewritten",
	"nothing was changed: switch by hand (port_db, then edit the database section, then synctl start), or move the database section into a file of its own in block style")

// ConfigEdit is the rewrite of one config file: its database section
// replaced by the PostgreSQL one, every other byte kept.
type ConfigEdit struct {
	// File is the file that holds the deployment's database section (the
	// last one of a split config that sets it).
	File string
	// Old and New are the file's contents before and after.
	Old, New []byte
	// OldSection and NewSection are the database sections, as text.
	OldSection, NewSection string
	// Backup is where Apply keeps the old file: beside it, dated.
	Backup string
	mode   os.FileMode
}

// section is a top-level key's lines in a YAML document: data[start:end]
// are whole lines, from the key's line to the last line of its value.
type section struct {
	start, end int
	key        *yaml.Node
	value      *yaml.Node
}

// findSection locates the top-level key of a block-style mapping document
// through its node tree. The section ends at the last line of its value:
// indented lines (and the blank or comment lines between them) before the
// next top-level key; comments at column 1 after it belong to what follows.
func findSection(name string, data []byte, key string) (*section, error) {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrConfigEdit, name, err)
	}
	var more yaml.Node
	if err := dec.Decode(&more); err == nil {
		return nil, fmt.Errorf("%w: %s holds several YAML documents", ErrConfigEdit, name)
	}
	if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, nil
	}
	m := doc.Content[0]
	if m.Style&yaml.FlowStyle != 0 {
		return nil, fmt.Errorf("%w: %s is one flow mapping ({...})", ErrConfigEdit, name)
	}
	var s *section
	next := 0 // line of the key after ours (0: none)
	for i := 0; i+1 < len(m.Content); i += 2 {
		k := m.Content[i]
		if s != nil && next == 0 {
			next = k.Line
		}
		if k.Kind == yaml.ScalarNode && k.Value == key {
			if s != nil {
				return nil, fmt.Errorf("%w: %s sets %s twice", ErrConfigEdit, name, key)
			}
			s = &section{key: k, value: m.Content[i+1]}
		}
	}
	if s == nil {
		return nil, nil
	}
	if s.key.Column != 1 {
		return nil, fmt.Errorf("%w: %s: %s is not at the start of line %d", ErrConfigEdit, name, key, s.key.Line)
	}
	if s.value.Kind == yaml.AliasNode || s.value.Anchor != "" {
		return nil, fmt.Errorf("%w: %s: %s is a YAML anchor or alias (line %d)", ErrConfigEdit, name, key, s.key.Line)
	}
	lines := splitLines(data)
	last := s.key.Line // 1-based, inclusive
	stop := len(lines)
	if next > 0 {
		stop = next - 1
	}
	for l := s.key.Line + 1; l <= stop; l++ {
		text := lines[l-1]
		if len(text) > 0 && (text[0] == ' ' || text[0] == '\t') && len(bytes.TrimSpace(text)) > 0 {
			last = l
		}
	}
	s.start = offsetOfLine(lines, s.key.Line)
	s.end = offsetOfLine(lines, last+1)
	return s, nil
}

// splitLines splits data into lines, each keeping its newline.
func splitLines(data []byte) [][]byte {
	var out [][]byte
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			out = append(out, data)
			break
		}
		out = append(out, data[:i+1])
		data = data[i+1:]
	}
	return out
}

// offsetOfLine is the byte offset where 1-based line l starts (the length
// of the data past the last line).
func offsetOfLine(lines [][]byte, l int) int {
	n := 0
	for i := 0; i < l-1 && i < len(lines); i++ {
		n += len(lines[i])
	}
	return n
}

// databaseFile finds the file of a config (a file, or a directory of
// *.yaml merged in name order) whose database section is the one in
// force: the last that sets it. It refuses the multi-database form.
func databaseFile(paths ...string) (string, []byte, *section, error) {
	files, _, err := config.FindFiles(paths)
	if err != nil {
		return "", nil, nil, err
	}
	var (
		file string
		data []byte
		sec  *section
	)
	for _, f := range files {
		d, err := os.ReadFile(f)
		if err != nil {
			return "", nil, nil, fmt.Errorf("read config %q: %w", f, err)
		}
		if s, err := findSection(f, d, "databases"); err != nil {
			return "", nil, nil, err
		} else if s != nil {
			return "", nil, nil, fmt.Errorf("%w: %s uses the multi-database form (databases:), which port_db does not port", ErrConfigEdit, f)
		}
		s, err := findSection(f, d, "database")
		if err != nil {
			return "", nil, nil, err
		}
		if s != nil {
			file, data, sec = f, d, s
		}
	}
	if sec == nil {
		return "", nil, nil, fmt.Errorf("%w: no database section in %s", config.ErrNoDatabase, strings.Join(paths, ", "))
	}
	return file, data, sec, nil
}

// PlanConfigEdit works out the rewrite of the deployment config at
// configPath (a file or a directory) that puts the database section of
// pgConfig in place of its own. It writes nothing; it checks that the
// result loads, that its database is pgConfig's, that every other key is
// unchanged, and that the file and its directory can be written.
func PlanConfigEdit(configPath, pgConfig string, now time.Time) (*ConfigEdit, error) {
	file, old, sec, err := databaseFile(configPath)
	if err != nil {
		return nil, err
	}
	pgFile, pgData, pgSec, err := databaseFile(pgConfig)
	if err != nil {
		return nil, err
	}
	st, err := os.Stat(file)
	if err != nil {
		return nil, err
	}
	e := &ConfigEdit{File: file, Old: old, mode: st.Mode().Perm(),
		OldSection: string(old[sec.start:sec.end]), Backup: backupName(file, now)}
	body := pgData[pgSec.start:pgSec.end]
	if len(body) == 0 || body[len(body)-1] != '\n' {
		body = append(append([]byte{}, body...), '\n')
	}
	stamp := fmt.Sprintf("# database switched from SQLite to PostgreSQL by port_db --switch-config at %s\n# (the database section of %s; the SQLite config is kept as %s)\n",
		now.UTC().Format(time.RFC3339), filepath.Base(pgFile), filepath.Base(e.Backup))
	e.NewSection = stamp + string(body)
	var b bytes.Buffer
	b.Write(old[:sec.start])
	b.WriteString(e.NewSection)
	rest := old[sec.end:]
	if sec.end == len(old) && len(old) > 0 && old[len(old)-1] != '\n' {
		rest = nil
	}
	b.Write(rest)
	e.New = b.Bytes()
	if err := e.check(configPath, pgConfig); err != nil {
		return nil, err
	}
	if err := writable.File(file, "config file"); err != nil {
		return nil, err
	}
	if err := writable.Dir(filepath.Dir(file), fmt.Sprintf("config file %q", file), "the new config is written beside it and renamed over it, and the old one is kept there"); err != nil {
		return nil, err
	}
	return e, nil
}

// check proves the rewrite: the new file is YAML whose database is the
// PostgreSQL config's and whose other keys are the old file's.
func (e *ConfigEdit) check(configPath, pgConfig string) error {
	var before, after map[string]any
	if err := yaml.Unmarshal(e.Old, &before); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrConfigEdit, e.File, err)
	}
	if err := yaml.Unmarshal(e.New, &after); err != nil {
		return fmt.Errorf("%w: %s: the rewritten file does not parse: %v", ErrConfigEdit, e.File, err)
	}
	delete(before, "database")
	dbNew := after["database"]
	delete(after, "database")
	if !reflect.DeepEqual(before, after) {
		return fmt.Errorf("%w: %s: rewriting its database section would change other keys", ErrConfigEdit, e.File)
	}
	pg, err := config.Load(pgConfig)
	if err != nil {
		return err
	}
	var pgRaw map[string]any
	_, pgData, _, err := databaseFile(pgConfig)
	if err != nil {
		return err
	}
	if err := yaml.Unmarshal(pgData, &pgRaw); err != nil {
		return err
	}
	if !reflect.DeepEqual(dbNew, pgRaw["database"]) {
		return fmt.Errorf("%w: %s: the rewritten database section is not the one of %s", ErrConfigEdit, e.File, pgConfig)
	}
	// The whole deployment config, the rewritten file in place, loads with
	// the PostgreSQL database.
	files, _, err := config.FindFiles([]string{configPath})
	if err != nil {
		return err
	}
	var in []config.File
	for _, f := range files {
		data := e.New
		if f != e.File {
			if data, err = os.ReadFile(f); err != nil {
				return err
			}
		}
		in = append(in, config.File{Name: f, Data: data})
	}
	cfg, err := config.Parse(in)
	if err != nil {
		return fmt.Errorf("%w: the rewritten config does not load: %v", ErrConfigEdit, err)
	}
	got, err := cfg.MainDatabase()
	if err != nil {
		return err
	}
	want, err := pg.MainDatabase()
	if err != nil {
		return err
	}
	if !got.IsPostgres() || !reflect.DeepEqual(got.Args, want.Args) {
		return fmt.Errorf("%w: the rewritten config's database is not %s", ErrConfigEdit, want)
	}
	return nil
}

// backupName is where the old config is kept: beside it, dated, with a
// name that does not end in .yaml so that a config directory ignores it.
func backupName(file string, now time.Time) string {
	return file + ".sqlite-" + now.UTC().Format("20060102T150405Z")
}

// Apply keeps a dated copy of the old file, then replaces the file with the
// new contents atomically: written beside it, synced, renamed over it, the
// directory synced. Whoever reads the file sees the old or the new one,
// never a mix, even if this process is killed.
func (e *ConfigEdit) Apply() error {
	if err := writeSynced(e.Backup, e.Old, e.mode, e.File); err != nil {
		return fmt.Errorf("keep a copy of %q: %w", e.File, err)
	}
	return replaceFile(e.File, e.New, e.mode)
}

// Restore puts the old file back (atomically) if it was replaced.
func (e *ConfigEdit) Restore() error {
	cur, err := os.ReadFile(e.File)
	if err == nil && bytes.Equal(cur, e.Old) {
		return nil
	}
	return replaceFile(e.File, e.Old, e.mode)
}

// writeSynced writes path (through a file beside it, renamed over it) and
// syncs it and its directory. The file gets the owner of like, where this
// process may give it.
func writeSynced(path string, data []byte, mode os.FileMode, like string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return err
	}
	name := tmp.Name()
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(name)
		}
	}()
	if err := tmp.Chmod(mode); err != nil {
		return err
	}
	if st, err := os.Stat(like); err == nil {
		if sys, ok := st.Sys().(*syscall.Stat_t); ok {
			_ = tmp.Chown(int(sys.Uid), int(sys.Gid))
		}
	}
	if _, err := tmp.Write(data); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(name, path); err != nil {
		return err
	}
	ok = true
	return syncDir(filepath.Dir(path))
}

// replaceFile replaces path with data atomically, keeping its owner where
// this process may.
func replaceFile(path string, data []byte, mode os.FileMode) error {
	if err := writeSynced(path, data, mode, path); err != nil {
		return fmt.Errorf("write %q: %w", path, err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return err
	}
	return nil
}

// currentDatabase is the database section in force in a config.
func currentDatabase(paths ...string) (config.Database, error) {
	cfg, err := config.Load(paths...)
	if err != nil {
		return config.Database{}, err
	}
	return cfg.MainDatabase()
}

// sameDatabase reports whether two database sections name the same
// database.
func sameDatabase(a, b config.Database) bool {
	return a.Name == b.Name && reflect.DeepEqual(a.Args, b.Args)
}
