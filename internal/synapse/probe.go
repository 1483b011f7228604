package synapse

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"

	"hsops/internal/fault"
)

// Module is the module update_synapse_database runs as.
const Module = "synapse._scripts.update_synapse_database"

// ErrNoSynapse means the --python interpreter cannot run, or has no Synapse.
var ErrNoSynapse = fault.New(fault.Config, "no Synapse installation at --python",
	"--python must name the Python interpreter of the Synapse release, e.g. /opt/venvs/matrix-synapse/bin/python (its `-c 'import synapse'` must work)")

// Release is what a Python's Synapse says about itself.
type Release struct {
	// Python is the interpreter.
	Python string `json:"python"`
	// Version is synapse.__version__, e.g. "1.98.0".
	Version string `json:"version"`
	// Schema is SCHEMA_VERSION: the schema version it upgrades databases to.
	Schema int `json:"schema_version"`
	// Compat is SCHEMA_COMPAT_VERSION (0 before v1.37, which had none).
	Compat int `json:"compat_version"`
	// SchemaDir is the release's synapse/storage/schema directory, where
	// its delta files are.
	SchemaDir string `json:"schema_dir,omitempty"`
}

// probeScript prints the release as one JSON line. Importing the schema
// module is what Synapse's start-up does too; it needs no config.
const probeScript = `import json, os, synapse
import synapse.storage.schema as schema_pkg
from synapse.storage.schema import SCHEMA_VERSION
try:
    from synapse.storage.schema import SCHEMA_COMPAT_VERSION
except ImportError:
    SCHEMA_COMPAT_VERSION = 0
print(json.dumps({"version": synapse.__version__, "schema": SCHEMA_VERSION, "compat": SCHEMA_COMPAT_VERSION, "dir": os.path.dirname(os.path.abspath(schema_pkg.__file__))}))
`

// Probe asks python which Synapse release it has installed.
func Probe(ctx context.Context, python string) (*Release, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, "-c", probeScript)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil && errors.Is(ctx.Err(), context.Canceled) {
			return nil, ctx.Err()
		}
		reason := lastLine(stderr.String())
		if reason == "" {
			reason = err.Error()
		}
		return nil, fmt.Errorf("%w: %s: %s", ErrNoSynapse, python, reason)
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	var got struct {
		Version string `json:"version"`
		Schema  int    `json:"schema"`
		Compat  int    `json:"compat"`
		Dir     string `json:"dir"`
	}
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &got); err != nil || got.Schema == 0 {
		return nil, fmt.Errorf("%w: %s: it did not say its schema version (%q)", ErrNoSynapse, python, lines[len(lines)-1])
	}
	return &Release{Python: python, Version: got.Version, Schema: got.Schema, Compat: got.Compat, SchemaDir: got.Dir}, nil
}

// lastLine is the last non-empty line of s.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}
