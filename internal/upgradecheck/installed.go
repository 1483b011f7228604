package upgradecheck

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/Masterminds/semver/v3"

	"hsops/internal/config"
	"hsops/internal/fault"
	"hsops/internal/inspect"
	"hsops/internal/releases"
	"hsops/schema"
)

// Options say what to check a deployment for.
type Options struct {
	// ConfigPaths are the main config's files (each worker config is
	// merged over them); ConfigArg is how the operator named them.
	ConfigPaths []string
	ConfigArg   string
	// WorkersDir holds the worker configs (*.yaml), as synctl -a.
	WorkersDir string
	// From is the installed release; nil asks Server (default: the
	// config's first client listener), else infers it from the database.
	From   *semver.Version
	Server string
	// To is the release to upgrade to.
	To *semver.Version
}

// CheckDeployment loads the deployment of cfg (its workers, its log config, its main
// database read-only), finds the installed release and checks the notes up
// to opts.To. A database that cannot be read fails the check: a report
// without its database checks (the state_group_edges duplicates, the
// locale) would pass a CI gate that checked nothing.
func CheckDeployment(ctx context.Context, cfg *config.Config, opts Options) (*Report, error) {
	d := &Deployment{Config: cfg, ConfigArg: opts.ConfigArg}
	d.LoadLogConfig()
	if err := d.loadWorkers(opts.ConfigPaths, opts.WorkersDir); err != nil {
		return nil, err
	}
	dbc, err := cfg.MainDatabase()
	if err != nil {
		return nil, err
	}
	ro, st, err := inspect.Inspect(ctx, dbc)
	if err != nil {
		return nil, err
	}
	if ro != nil {
		defer ro.Close()
		d.DB, d.State = ro, st
	}
	from, source := opts.From, "--from"
	if from == nil {
		if from, source, err = Installed(ctx, cfg, opts.Server, st); err != nil {
			return nil, err
		}
	}
	r := Run(ctx, d, from, source, opts.To)
	r.FromVersion, r.ToVersion = from, opts.To
	return r, nil
}

// loadWorkers reads the worker configs of dir (none when dir is empty),
// each merged over the main config's files.
func (d *Deployment) loadWorkers(main []string, dir string) error {
	if dir == "" {
		return nil
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil || len(files) == 0 {
		return fault.Wrap(fault.Config, fmt.Errorf("%w: no *.yaml worker config in %q", config.ErrNotFound, dir),
			"--workers takes the directory of the worker configs (as synctl -a); leave it out for a deployment without workers")
	}
	sort.Strings(files)
	for _, f := range files {
		w, err := config.Load(append(append([]string{}, main...), f)...)
		if err != nil {
			return err
		}
		if w.IsWorker() {
			d.Workers = append(d.Workers, w)
		}
	}
	return nil
}

// ErrUnknownInstalled means the installed release could not be found.
var ErrUnknownInstalled = fault.New(fault.Usage, "cannot tell the installed release (no --from, no server answering, no matching schema)",
	"pass --from VERSION: the release the homeserver runs now")

// Installed finds the release a deployment runs: what the running server
// answers on /_synapse/admin/v1/server_version (at server, default the
// config's first client listener), else the oldest release matching the
// database's schema and compat versions (st; said as a range). It returns
// the version and how it was found.
func Installed(ctx context.Context, cfg *config.Config, server string, st *schema.State) (*semver.Version, string, error) {
	if server == "" {
		server = config.BaseURL(cfg.Listeners)
	}
	if server != "" {
		if v, how, ok := askServer(ctx, server); ok {
			return v, how, nil
		}
	}
	if st != nil && st.HasVersion {
		matching := releases.Matching(st.Version, st.Compat)
		if len(matching) > 0 {
			how := fmt.Sprintf("inferred from the database (schema %d, compat %d): one of %s; the oldest is assumed, so notes may include ones already applied",
				st.Version, st.Compat, releases.Series(matching))
			return matching[0].Version, how, nil
		}
	}
	return nil, "", ErrUnknownInstalled
}

// askServer reads the running server's version. Synapse answers "1.98.0";
// the hsops engine answers its own version and its schema version, which
// maps to the releases with that schema.
func askServer(ctx context.Context, base string) (*semver.Version, string, bool) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(base, "/")+"/_synapse/admin/v1/server_version", nil)
	if err != nil {
		return nil, "", false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, "", false
	}
	defer resp.Body.Close()
	var v struct {
		ServerVersion string `json:"server_version"`
		Engine        string `json:"engine"`
		SchemaVersion int    `json:"schema_version"`
	}
	if json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&v) != nil {
		return nil, "", false
	}
	if v.Engine == "hsops" && v.SchemaVersion > 0 {
		m := releases.Matching(v.SchemaVersion, 0)
		if len(m) == 0 {
			return nil, "", false
		}
		return m[0].Version, fmt.Sprintf("the running hsops engine at %s (schema %d, like %s)", base, v.SchemaVersion, releases.Series(m)), true
	}
	sv, err := releases.ParseVersion(strings.Fields(v.ServerVersion + " ")[0])
	if err != nil {
		return nil, "", false
	}
	return sv, "the running server at " + base, true
}
