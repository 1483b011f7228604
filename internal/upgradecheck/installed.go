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
	// From is the installed release as the operator claims it; nil asks
	// Server (default: the config's first client listener), else infers it
	// from the database. The database checks either claim.
	From   *semver.Version
	Server string
	// To is the release to upgrade to.
	To *semver.Version
}

// CheckDeployment loads the deployment of cfg (its workers, its log config, its main
// database read-only), finds the installed release and checks the notes up
// to opts.To. The database's schema and compat versions are always read
// and always win: --from and a running server's answer are claims checked
// against them. A database that cannot be read fails the check: a report
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
	inst := FindInstalled(ctx, cfg, opts.From, opts.Server, st)
	r := Run(ctx, d, inst, opts.To)
	r.FromVersion, r.ToVersion = inst.Version, opts.To
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

// Installation is the installed release as the database lets it be told.
// The database's schema and compat versions are the ground truth; --from
// and a running server's answer are claims they check. A claim the
// database confirms is used (it is more precise than the versions, which
// several releases share); one it contradicts is a blocker, and the
// database's own versions are used instead.
type Installation struct {
	// Version is nil when nothing tells it: no claim the database confirms
	// and no release hsops knows runs on the database.
	Version *semver.Version
	// Source says how it was found.
	Source string
	// Claim is the finding about --from or the server's answer: ok when the
	// database confirms it, a blocker when it contradicts it; nil without a
	// claim (or without database versions to check one against).
	Claim *Finding
}

// FindInstalled finds the release a deployment runs. from is --from (nil
// when not given); else the running server at server (default: the config's
// first client listener) is asked on /_synapse/admin/v1/server_version; else,
// or when the database contradicts the claim, the oldest release that runs
// on the database (st) is assumed, said as a range.
func FindInstalled(ctx context.Context, cfg *config.Config, from *semver.Version, server string, st *schema.State) Installation {
	db := fromDatabase(st)
	if from != nil {
		return db.claim(from, st)
	}
	fromConfig := server == ""
	if fromConfig {
		server = config.BaseURL(cfg.Listeners)
	}
	if server != "" {
		if a, ok := askServer(ctx, server); ok {
			a.fromConfig = fromConfig
			return db.server(a, st)
		}
	}
	if db.how == "" {
		return Installation{Source: "nothing tells it: no --from, no server answering, no database versions"}
	}
	return Installation{Version: db.version, Source: db.how}
}

// inferred is what the database's own versions say of the installed release.
type inferred struct {
	version *semver.Version
	// how says so ("" when the database has no versions).
	how string
	// like names the releases that run on the database ("" for none).
	like string
}

func fromDatabase(st *schema.State) inferred {
	if st == nil || !st.HasVersion {
		return inferred{}
	}
	if matching := runningOn(st); len(matching) > 0 {
		how := fmt.Sprintf("inferred from the database (schema %d, compat %d): %s", st.Version, st.Compat, matching[0].Tag())
		if len(matching) > 1 {
			how = fmt.Sprintf("inferred from the database (schema %d, compat %d): one of %s; the oldest is assumed, so notes may include ones already applied",
				st.Version, st.Compat, releases.Series(matching))
		}
		return inferred{version: matching[0].Version, how: how, like: releases.Series(matching)}
	}
	return inferred{how: fmt.Sprintf("no release hsops knows runs on the database (schema %d, compat %d)", st.Version, st.Compat)}
}

// runningOn returns the releases that can be running on the database: those
// that left it at exactly its versions, else any that runs on it.
func runningOn(st *schema.State) []releases.SchemaFact {
	var exact, runs []releases.SchemaFact
	for _, f := range releases.SchemaFacts() {
		if !releases.RunsOn(f, st.Version, st.Compat) {
			continue
		}
		runs = append(runs, f)
		if f.Schema == st.Version && f.Compat == st.Compat {
			exact = append(exact, f)
		}
	}
	if len(exact) > 0 {
		return exact
	}
	return runs
}

// runs checks a claimed release against the database: whether it can be
// running there, and why (the database's versions and the release's).
// known is false when hsops has no facts to decide with.
func runs(v *semver.Version, st *schema.State) (ok, known bool, why string) {
	have := fmt.Sprintf("the database is at schema %d/compat %d", st.Version, st.Compat)
	r, found := releases.Find(v)
	if !found {
		newest := releases.NewestFact()
		if !newest.Version.LessThan(v) {
			return false, false, "hsops has no schema facts for v" + v.String()
		}
		// Schema versions never go down from one release to the next.
		return st.Version >= newest.Schema, true, fmt.Sprintf("%s; v%s is newer than hsops's facts (%s, schema %d), so it runs at schema %d or later",
			have, v, newest.Tag(), newest.Schema, newest.Schema)
	}
	f := releases.SchemaFact{Version: r.Version, Schema: r.Schema, Compat: r.Compat}
	return releases.RunsOn(f, st.Version, st.Compat), true, fmt.Sprintf("%s; v%s runs at %s", have, v, f.Span())
}

// claim checks --from against the database.
func (db inferred) claim(from *semver.Version, st *schema.State) Installation {
	if db.how == "" {
		return Installation{Version: from, Source: "--from"}
	}
	ok, known, why := runs(from, st)
	title := fmt.Sprintf("--from v%s", from)
	switch {
	case !known:
		return Installation{Version: from, Source: "--from", Claim: claimFact(title+" cannot be checked against the database", Result{Status: NotCheckable, Detail: why})}
	case ok:
		return Installation{Version: from, Source: "--from", Claim: claimFact(title+" agrees with the database", Result{Status: OK, Detail: why})}
	}
	fix := "leave --from out, or pass the release this deployment runs"
	if db.version != nil {
		fix = fmt.Sprintf("leave --from out (the database says v%s), or pass the release this deployment runs", db.version)
	}
	return Installation{Version: db.version, Source: db.how + fmt.Sprintf("; not --from v%s, which the database contradicts", from),
		Claim: claimFact(title+" contradicts the database", blocker(why+": --from is wrong or the config names another deployment's database", fix))}
}

func claimFact(title string, res Result) *Finding {
	f := fact("installed-release", title, res)
	return &f
}

// answer is what a running server said on server_version.
type answer struct {
	url string
	// fromConfig is set when the URL is the config's listener, not --server.
	fromConfig bool
	// version is Synapse's release; nil for the hsops engine.
	version *semver.Version
	// engineSchema is the hsops engine's own schema version.
	engineSchema int
	// database is the hsops engine's database identity (nil from Synapse,
	// or from an engine too old to say it).
	database *databaseIdentity
}

// databaseIdentity is how the hsops engine names the database it serves
// (internal/server): its mark and its versions.
type databaseIdentity struct {
	Engine    string `json:"engine"`
	CreatedTS int64  `json:"created_ts"`
	Schema    int    `json:"schema_version"`
	Compat    int    `json:"compat_version"`
}

func (id databaseIdentity) String() string {
	return fmt.Sprintf("the %s engine database created %s (schema %d/compat %d)", id.Engine, created(id.CreatedTS), id.Schema, id.Compat)
}

func created(ms int64) string { return time.UnixMilli(ms).UTC().Format(time.RFC3339Nano) }

// server checks a server's answer against the database: it is believed
// only when shown to serve this database (the engine names its database;
// a Synapse release must be one that runs on the database's versions).
func (db inferred) server(a answer, st *schema.State) Installation {
	name := "the running server at " + a.url
	if a.version == nil {
		name = "the running hsops engine at " + a.url
	}
	if db.how == "" {
		// Nothing to check the answer against (the database has no
		// versions, which is a blocker of its own).
		if a.version == nil {
			return Installation{Version: db.version, Source: name}
		}
		return Installation{Version: a.version, Source: name}
	}
	title := "The server at " + a.url
	var serves bool
	var why string
	switch {
	case a.database != nil:
		serves = st.Mark != nil && st.Mark.Engine == a.database.Engine && st.Mark.CreatedTS == a.database.CreatedTS &&
			st.Version == a.database.Schema && st.Compat == a.database.Compat
		ours := fmt.Sprintf("a Synapse database (schema %d/compat %d)", st.Version, st.Compat)
		if st.Mark != nil {
			ours = databaseIdentity{Engine: st.Mark.Engine, CreatedTS: st.Mark.CreatedTS, Schema: st.Version, Compat: st.Compat}.String()
		}
		if serves {
			why = "it serves " + ours
		} else {
			why = fmt.Sprintf("it serves %s; this deployment's is %s", a.database, ours)
		}
	case a.version == nil:
		// An engine that does not name its database: it runs on databases
		// at its schema version or later whose compat it understands.
		serves = st.Version >= a.engineSchema && st.Compat <= a.engineSchema
		why = fmt.Sprintf("the database is at schema %d/compat %d; the hsops engine (schema %d) runs at compat %d or less and schema %d or later",
			st.Version, st.Compat, a.engineSchema, a.engineSchema, a.engineSchema)
	default:
		var known bool
		if serves, known, why = runs(a.version, st); !known {
			return Installation{Version: a.version, Source: name,
				Claim: claimFact(title+" cannot be checked against the database", Result{Status: NotCheckable, Detail: why})}
		}
	}
	if serves {
		if a.version != nil {
			return Installation{Version: a.version, Source: name, Claim: claimFact(fmt.Sprintf("%s (v%s) agrees with the database", title, a.version), ok(why))}
		}
		if a.database == nil {
			return Installation{Version: db.version, Source: fmt.Sprintf("%s, at the database's versions (schema %d, compat %d: like %s)", name, st.Version, st.Compat, db.like),
				Claim: claimFact(title+" agrees with the database", ok(why))}
		}
		return Installation{Version: db.version, Source: fmt.Sprintf("%s, serving this database (schema %d, compat %d: like %s)", name, st.Version, st.Compat, db.like),
			Claim: claimFact(title+" serves this database", ok(why))}
	}
	where, fix := "--server names another deployment's server", "give this deployment's server with --server URL, or the installed release with --from VERSION"
	if a.fromConfig {
		where = "another deployment's server listens on this deployment's port"
		fix = "stop the other deployment's server or move it off this deployment's port, or give this deployment's server with --server URL, or the installed release with --from VERSION"
	}
	said := fmt.Sprintf("v%s", a.version)
	if a.version == nil {
		said = "the running hsops engine"
	}
	not := fmt.Sprintf("; not %s at %s, which serves another database", said, a.url)
	if a.version != nil {
		not = fmt.Sprintf("; not %s (%s), which the database contradicts", said, name)
	}
	return Installation{Version: db.version, Source: db.how + not,
		Claim: claimFact(title+" does not serve this database", blocker(why+": "+where+", or the config names the wrong database", fix))}
}

// askServer reads the running server's version. Synapse answers "1.98.0";
// the hsops engine answers its own version, its schema version and the
// identity of the database it serves.
func askServer(ctx context.Context, base string) (answer, bool) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	base = strings.TrimRight(base, "/")
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/_synapse/admin/v1/server_version", nil)
	if err != nil {
		return answer{}, false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return answer{}, false
	}
	defer resp.Body.Close()
	var v struct {
		ServerVersion string            `json:"server_version"`
		Engine        string            `json:"engine"`
		SchemaVersion int               `json:"schema_version"`
		Database      *databaseIdentity `json:"database"`
	}
	if json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&v) != nil {
		return answer{}, false
	}
	if v.Engine == "hsops" && v.SchemaVersion > 0 {
		return answer{url: base, engineSchema: v.SchemaVersion, database: v.Database}, true
	}
	sv, err := releases.ParseVersion(strings.Fields(v.ServerVersion + " ")[0])
	if err != nil {
		return answer{}, false
	}
	return answer{url: base, version: sv}, true
}
