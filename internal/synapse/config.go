package synapse

import (
	"encoding/json"
	"fmt"
	"os"

	"hsops/internal/config"
)

// ConfigEdit changes a homeserver config on its way to WriteConfig.
type ConfigEdit struct {
	// Args replaces keys of a database's args, by database label ("master"
	// for the single database section); a nil value removes the key.
	Args map[string]map[string]any
	// Set replaces top-level keys.
	Set map[string]any
}

// WriteConfig writes cfg, merged from all its files, as one JSON document
// (JSON is YAML) with the edit applied: update_synapse_database reads one
// file only, and must see the whole homeserver config (it builds a full
// HomeServerConfig). The file holds the config's secrets: it is written
// with mode 0600 and the caller puts it in a private directory.
func WriteConfig(path string, cfg *config.Config, edit ConfigEdit) error {
	doc := map[string]any{}
	for _, k := range cfg.Keys() {
		v, ok := cfg.Raw(k)
		if ok {
			doc[k] = jsonable(v)
		}
	}
	for label, args := range edit.Args {
		section, err := databaseSection(doc, label)
		if err != nil {
			return err
		}
		a, _ := section["args"].(map[string]any)
		if a == nil {
			a = map[string]any{}
		}
		for k, v := range args {
			if v == nil {
				delete(a, k)
			} else {
				a[k] = v
			}
		}
		section["args"] = a
	}
	for k, v := range edit.Set {
		doc[k] = v
	}
	data, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return fmt.Errorf("render config: %w", err)
	}
	return os.WriteFile(path, append(data, '\n'), 0o600)
}

// databaseSection finds the section of a database label in a config
// document.
func databaseSection(doc map[string]any, label string) (map[string]any, error) {
	if dbs, ok := doc["databases"].(map[string]any); ok {
		if s, ok := dbs[label].(map[string]any); ok {
			return s, nil
		}
		return nil, fmt.Errorf("%w: no database %q under databases", config.ErrInvalid, label)
	}
	if s, ok := doc["database"].(map[string]any); ok && label == "master" {
		return s, nil
	}
	if label == "master" {
		s := map[string]any{"name": config.EngineSQLite}
		doc["database"] = s
		return s, nil
	}
	return nil, fmt.Errorf("%w: no database %q", config.ErrInvalid, label)
}

// jsonable turns what YAML decoded into values encoding/json takes (maps
// with non-string keys become string-keyed).
func jsonable(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = jsonable(e)
		}
		return out
	case map[any]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[fmt.Sprint(k)] = jsonable(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = jsonable(e)
		}
		return out
	}
	return v
}
