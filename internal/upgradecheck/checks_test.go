package upgradecheck

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"hsops/internal/config"
	"hsops/internal/db"
	"hsops/internal/dbtest"
	"hsops/internal/fault"
	"hsops/internal/pgtest"
	"hsops/internal/releases"
	"hsops/schema"
	"hsops/schema/engine"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func deployment(t *testing.T, yaml string, workers ...string) *Deployment {
	t.Helper()
	cfg, err := config.Parse([]config.File{{Name: "hs.yaml", Data: []byte("server_name: example.org\n" + yaml)}})
	if err != nil {
		t.Fatal(err)
	}
	d := &Deployment{Config: cfg, ConfigArg: "hs.yaml"}
	for _, w := range workers {
		wc, err := config.Parse([]config.File{{Name: "w.yaml", Data: []byte(w)}})
		if err != nil {
			t.Fatal(err)
		}
		d.Workers = append(d.Workers, wc)
	}
	d.LoadLogConfig()
	return d
}

func run(t *testing.T, check string, d *Deployment, to string) Result {
	t.Helper()
	v, _ := releases.ParseVersion(to)
	return checks[check](context.Background(), d, releases.Note{Version: to}, v)
}

func TestConfigChecks(t *testing.T) {
	logCfg := filepath.Join(t.TempDir(), "log.yaml")
	if err := os.WriteFile(logCfg, []byte("structured: true\ndrains: {}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	worker := "worker_app: synapse.app.generic_worker\nworker_name: w1\nworker_replication_host: 127.0.0.1\n"
	cases := []struct {
		name, check, yaml, to string
		workers               []string
		want                  Status
	}{
		{"legacy metrics set", "enable_legacy_metrics", "enable_legacy_metrics: true", "1.80.0", nil, Action},
		{"legacy metrics unset", "enable_legacy_metrics", "", "1.80.0", nil, OK},
		{"structured logging removed", "structured_logging", "log_config: " + logCfg, "1.54.0", nil, Blocker},
		{"structured logging deprecated", "structured_logging", "log_config: " + logCfg, "1.53.0", nil, Action},
		{"webclient listener", "webclient", "listeners: [{port: 8080, type: webclient}]", "1.53.0", nil, Blocker},
		{"non-http web client location", "webclient", "web_client_location: /var/www", "1.51.0", nil, Action},
		{"email delegate removed", "threepid_email_delegate", "account_threepid_delegates: {email: https://id.example}", "1.66.0", nil, Blocker},
		{"email delegate deprecated", "threepid_email_delegate", "account_threepid_delegates: {email: https://id.example}", "1.64.0", nil, Action},
		{"template dir", "template_dir", "email: {template_dir: /t}", "1.41.0", nil, Action},
		{"appservice worker type", "legacy_worker_types", "", "1.59.0", []string{"worker_app: synapse.app.appservice\nworker_name: as"}, Action},
		{"notify_appservices", "legacy_worker_types", "notify_appservices: false", "1.59.0", nil, Action},
		{"open registration", "open_registration", "enable_registration: true", "1.56.0", nil, Blocker},
		{"registration with captcha", "open_registration", "enable_registration: true\nenable_registration_captcha: true", "1.56.0", nil, OK},
		{"registration acknowledged", "open_registration", "enable_registration: true\nenable_registration_without_verification: true", "1.56.0", nil, OK},
		{"workers without redis", "redis_for_workers", "", "1.67.0", []string{worker}, Blocker},
		{"workers with redis", "redis_for_workers", "redis: {enabled: true}", "1.67.0", []string{worker}, OK},
		{"no workers", "redis_for_workers", "", "1.67.0", nil, NotApplicable},
		{"worker replication settings", "worker_replication_settings", "", "1.84.0", []string{worker}, Action},
		{"instance map without main", "instance_map_main", "instance_map: {w1: {host: a, port: 1}}", "1.85.0", []string{worker}, Action},
		{"instance map with main", "instance_map_main", "instance_map: {main: {host: a, port: 1}}", "1.85.0", []string{worker}, OK},
		{"replication streams", "workers_upgrade_together", "", "1.64.0", []string{worker}, Action},
		{"federation_ip_range_blacklist", "federation_ip_range_blacklist", "federation_ip_range_blacklist: []", "1.25.0", nil, Action},
		{"log_file", "log_file", "log_file: /var/log/x", "1.8.0", nil, Blocker},
		{"x_forwarded", "x_forwarded", "listeners: [{port: 8008, type: http, x_forwarded: true}]", "1.29.0", nil, Action},
		{"no sso", "sso_configured", "", "1.27.0", nil, NotApplicable},
		{"modules", "modules_present", "modules: [{module: m.M}]", "1.62.0", nil, Action},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := run(t, c.check, deployment(t, c.yaml, c.workers...), c.to)
			if got.Status != c.want {
				t.Errorf("got %s (%s), want %s", got.Status, got.Detail, c.want)
			}
		})
	}
}

func TestDatabaseChecks(t *testing.T) {
	dbtest.Engines(t, func(t *testing.T, e db.Engine) {
		ctx := context.Background()
		tg := dbtest.New(t, e)
		d := tg.Open(t)
		if _, err := engine.Schema().Apply(ctx, d, schema.Options{Target: 69}); err != nil {
			t.Fatal(err)
		}
		dep := deployment(t, "")
		dep.DB = d
		var err error
		if dep.State, err = schema.ReadState(ctx, d, d.DB); err != nil {
			t.Fatal(err)
		}
		if got := run(t, "state_group_edges_duplicates", dep, "1.60.0"); got.Status != OK {
			t.Errorf("clean edges: got %s", got.Status)
		}
		if _, err := d.Exec("INSERT INTO state_group_edges VALUES (2, 1), (2, 1)"); err != nil {
			t.Fatal(err)
		}
		if got := run(t, "state_group_edges_duplicates", dep, "1.60.0"); got.Status != Blocker || got.Command == "" {
			t.Errorf("duplicated edges: got %s %q", got.Status, got.Command)
		}
		want := map[db.Engine]Status{db.Postgres: OK, db.SQLite: NotApplicable}
		if got := run(t, "postgres_floor", dep, "1.80.0"); got.Status != want[e] {
			t.Errorf("postgres floor: got %s (%s)", got.Status, got.Detail)
		}
		if got := run(t, "postgres_locale", dep, "1.56.0"); got.Status != want[e] {
			t.Errorf("locale: got %s (%s)", got.Status, got.Detail)
		}
		if _, err := d.Exec("INSERT INTO background_updates (update_name, progress_json) VALUES ('threads_backfill', '{}')"); err != nil {
			t.Fatal(err)
		}
		if dep.State, err = schema.ReadState(ctx, d, d.DB); err != nil {
			t.Fatal(err)
		}
		to, _ := releases.ParseVersion("1.80.0")
		facts := databaseFacts(ctx, dep, to, nil)
		if f := findFact(facts, "pending-background-updates"); f == nil || f.Status != Action {
			t.Errorf("pending updates at 69: %+v", facts)
		}
		// The duplicates are checked whatever the range.
		if f := findFact(facts, "state-group-edges"); f == nil || f.Status != Blocker {
			t.Errorf("duplicated edges outside the range: %+v", f)
		}
		if f := findFact(databaseFacts(ctx, dep, to, map[string]bool{"state_group_edges_duplicates": true}), "state-group-edges"); f != nil {
			t.Errorf("the duplicates were checked twice")
		}
		if e == db.Postgres {
			for _, id := range []string{"postgres-version", "postgres-locale"} {
				if f := findFact(facts, id); f == nil || f.Status != OK {
					t.Errorf("%s: got %+v, want ok", id, f)
				}
			}
			// A note in the range that checks them already: not twice.
			if f := findFact(databaseFacts(ctx, dep, to, map[string]bool{"postgres_locale": true}), "postgres-locale"); f != nil {
				t.Errorf("the locale was checked twice")
			}
		}
	})
}

func findFact(fs []Finding, id string) *Finding {
	for i := range fs {
		if fs[i].Note.ID == id {
			return &fs[i]
		}
	}
	return nil
}

// TestDatabaseFacts_LocaleWhateverTheRange: a database with the wrong
// locale is a blocker for any upgrade, not only one crossing the release
// whose notes talk about locales.
func TestDatabaseFacts_LocaleWhateverTheRange(t *testing.T) {
	ctx := context.Background()
	tg := pgtest.NewDatabaseWithLocale(t, "C.UTF-8")
	d, err := db.Open(ctx, tg.Config, db.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	// Apply refuses to create a schema there; Execute, as when a database
	// was restored onto such a server, does not ask.
	st, err := schema.ReadState(ctx, d, d.DB)
	if err != nil {
		t.Fatal(err)
	}
	set := engine.Schema()
	plan, err := set.Plan(st, db.Postgres, schema.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := set.Execute(ctx, d, plan, schema.Options{}); err != nil {
		t.Fatal(err)
	}
	dep := deployment(t, "")
	dep.DB = d
	if dep.State, err = schema.ReadState(ctx, d, d.DB); err != nil {
		t.Fatal(err)
	}
	from, _ := releases.ParseVersion("1.90.0")
	to, _ := releases.ParseVersion("1.98.0")
	r := Run(ctx, dep, Installation{Version: from, Source: "--from"}, to)
	f := findFact(r.Database, "postgres-locale")
	if f == nil || f.Status != Blocker || !strings.Contains(f.Detail, `COLLATE is "C.UTF-8"`) {
		t.Fatalf("got %+v, want a locale blocker", f)
	}
	if c := fault.ClassOf(r.Verdict()); c != fault.Blockers {
		t.Errorf("verdict %v, want blockers", c)
	}
}

// TestDowngrade_FromANewerReleaseThanKnown: --from newer than the release
// data must not crash, and the oldest release that can use the database
// comes from the database's own versions.
func TestDowngrade_FromANewerReleaseThanKnown(t *testing.T) {
	d := deployment(t, "")
	d.State = &schema.State{Kind: schema.KindSynapse, HasVersion: true, Version: 83, HasCompat: true, Compat: 83}
	from, _ := releases.ParseVersion("1.120.0")
	to, _ := releases.ParseVersion("1.90.0")
	f := downgrade(d, from, to)
	if f.Status != Blocker || !strings.Contains(f.Detail, "the oldest release that can use it is v1.96.0") {
		t.Errorf("got %s %q", f.Status, f.Detail)
	}
	d.State = nil
	if f := downgrade(d, from, to); f.Detail == "" {
		t.Errorf("no detail without database facts: %+v", f)
	}
}
