package upgradecheck

import (
	"context"
	"fmt"
	"strings"

	"github.com/Masterminds/semver/v3"

	"hsops/internal/db"
	"hsops/internal/plural"
	"hsops/internal/releases"
	"hsops/internal/repair"
	"hsops/internal/sequences"
	"hsops/schema"
)

// Result is what a check found.
type Result struct {
	Status  Status
	Detail  string
	Command string
}

// Check examines the deployment for one note; to is the target release.
type Check func(ctx context.Context, d *Deployment, n releases.Note, to *semver.Version) Result

var checks map[string]Check

func init() {
	checks = map[string]Check{
		"state_group_edges_duplicates":  checkEdges,
		"postgres_floor":                checkPostgresFloor,
		"sqlite_floor":                  checkSQLiteFloor,
		"postgres_locale":               checkLocale,
		"enable_legacy_metrics":         configKey("enable_legacy_metrics", "remove enable_legacy_metrics from the config and update dashboards and alerting rules to the new metric names"),
		"structured_logging":            checkStructuredLogging,
		"webclient":                     checkWebclient,
		"threepid_email_delegate":       checkEmailDelegate,
		"template_dir":                  checkTemplateDir,
		"legacy_worker_types":           checkLegacyWorkers,
		"open_registration":             checkOpenRegistration,
		"redis_for_workers":             checkRedis,
		"worker_replication_settings":   checkWorkerReplication,
		"instance_map_main":             checkInstanceMap,
		"workers_upgrade_together":      checkUpgradeTogether,
		"appservice_worker_stopped":     checkAppserviceWorker,
		"federation_ip_range_blacklist": configKey("federation_ip_range_blacklist", "rename federation_ip_range_blacklist to ip_range_blacklist (or remove it if never customised)"),
		"log_file":                      checkLogFile,
		"room_invite_state_types":       configKey("room_invite_state_types", "remove room_invite_state_types (or move a customised value to room_prejoin_state)"),
		"expiry_time":                   checkExpiryTime,
		"x_forwarded":                   presence(xForwarded, "make sure the reverse proxy sets X-Forwarded-Proto and keeps the Host header"),
		"sso_configured":                presence(sso, "this deployment uses single sign-on: follow the note"),
		"custom_templates":              presence(templates, "this deployment has custom templates: follow the note"),
		"modules_present":               presence(modules, "this deployment loads modules: check each one against the note"),
		"appservices_present":           presence(appservices, "this deployment has application services: check them against the note"),
		"events_reindex_space":          checkReindexSpace,
		"rust_floor":                    checkRust,
	}
}

func ok(detail string) Result           { return Result{Status: OK, Detail: detail} }
func na(detail string) Result           { return Result{Status: NotApplicable, Detail: detail} }
func action(detail, cmd string) Result  { return Result{Status: Action, Detail: detail, Command: cmd} }
func blocker(detail, cmd string) Result { return Result{Status: Blocker, Detail: detail, Command: cmd} }

// atLeast reports whether the target release is at or after v.
func atLeast(to *semver.Version, v string) bool {
	return !to.LessThan(semver.MustParse(v))
}

func configKey(key, fix string) Check {
	return func(_ context.Context, d *Deployment, _ releases.Note, _ *semver.Version) Result {
		if d.Config.Has(key) {
			return action(fmt.Sprintf("%s is set in %s", key, d.Config.Source(key)), fix)
		}
		return ok(key + " is not set")
	}
}

func presence(present func(*Deployment) bool, what string) Check {
	return func(_ context.Context, d *Deployment, _ releases.Note, _ *semver.Version) Result {
		if present(d) {
			return action(what, "")
		}
		return na("not used by this deployment")
	}
}

func checkLogFile(_ context.Context, d *Deployment, _ releases.Note, _ *semver.Version) Result {
	if d.Config.Has("log_file") {
		return blocker("log_file is set in "+d.Config.Source("log_file")+": Synapse refuses to start with it", "replace log_file with log_config")
	}
	return ok("log_file is not set")
}

func checkEdges(ctx context.Context, d *Deployment, _ releases.Note, _ *semver.Version) Result {
	if d.DB == nil {
		return Result{Status: NotCheckable, Detail: "the database could not be opened"}
	}
	pairs, extra, err := repair.CountDuplicateEdges(ctx, d.DB)
	if err != nil {
		return Result{Status: NotCheckable, Detail: err.Error()}
	}
	if pairs > 0 {
		return blocker(fmt.Sprintf("state_group_edges has %s (%s): the unique index cannot be built", plural.Count(pairs, "duplicated (state_group, prev_state_group) pair"), plural.Count(extra, "extra row")),
			"update_database repair state-group-edges --database-config "+d.ConfigArg)
	}
	return ok("no duplicate state_group_edges rows")
}

func checkPostgresFloor(ctx context.Context, d *Deployment, _ releases.Note, to *semver.Version) Result {
	if d.DB == nil {
		return Result{Status: NotCheckable, Detail: "the database could not be opened"}
	}
	if d.DB.Engine != db.Postgres {
		return na("the database is SQLite")
	}
	min, since := releases.FloorFor(to, "postgres")
	n, human, err := d.DB.ServerVersion(ctx)
	if err != nil || min == nil {
		return Result{Status: NotCheckable, Detail: "cannot read the server version"}
	}
	// server_version_num: 150004 is 15.4; before 10, 90605 is 9.6.5.
	have := semver.MustParse(fmt.Sprintf("%d.%d", n/10000, n%10000))
	if n < 100000 {
		have = semver.MustParse(fmt.Sprintf("%d.%d", n/10000, (n/100)%100))
	}
	if have.LessThan(min) {
		return blocker(fmt.Sprintf("PostgreSQL %s, but v%s requires %s or newer (since v%s)", human, to, min, since), "upgrade PostgreSQL first")
	}
	return ok(fmt.Sprintf("PostgreSQL %s; v%s requires %s or newer (since v%s)", human, to, trimVersion(min), since))
}

func trimVersion(v *semver.Version) string {
	s := v.String()
	return strings.TrimSuffix(strings.TrimSuffix(s, ".0"), ".0")
}

func checkSQLiteFloor(ctx context.Context, d *Deployment, _ releases.Note, to *semver.Version) Result {
	if d.DB == nil || d.DB.Engine != db.SQLite {
		return na("the database is not SQLite")
	}
	min, _ := releases.FloorFor(to, "sqlite")
	if d.State != nil && d.State.Kind == schema.KindEngine {
		_, human, _ := d.DB.ServerVersion(ctx)
		return ok("the hsops engine uses its own SQLite " + human)
	}
	return Result{Status: NotCheckable, Detail: fmt.Sprintf("Synapse uses the SQLite library of its Python: it must be %s or newer", trimVersion(min)),
		Command: `python -c "import sqlite3; print(sqlite3.sqlite_version)"`}
}

func checkLocale(ctx context.Context, d *Deployment, _ releases.Note, _ *semver.Version) Result {
	if d.DB == nil {
		return Result{Status: NotCheckable, Detail: "the database could not be opened"}
	}
	if d.DB.Engine != db.Postgres {
		return na("the database is SQLite")
	}
	l, err := db.PostgresLocale(ctx, d.DB)
	if err != nil {
		return Result{Status: NotCheckable, Detail: err.Error()}
	}
	if !strings.EqualFold(l.Encoding, "UTF8") {
		return blocker(fmt.Sprintf("the database's encoding is %q: Synapse needs UTF8 and will refuse to start", l.Encoding),
			"create a UTF8 database (createdb --encoding=UTF8 --locale=C --template=template0) and move the data into it")
	}
	if l.Collate == "C" && l.CType == "C" {
		return ok("UTF8, COLLATE and CTYPE are C")
	}
	dbc, _ := d.Config.MainDatabase()
	detail := fmt.Sprintf("COLLATE is %q and CTYPE is %q", l.Collate, l.CType)
	if dbc.AllowUnsafeLocale {
		return action(detail+"; allow_unsafe_locale is set, so Synapse starts, but sorting may be wrong", "")
	}
	return blocker(detail+" and allow_unsafe_locale is not set: Synapse will refuse to start",
		"set allow_unsafe_locale: true in the database section, or recreate the database with --locale=C and port the data")
}

func checkStructuredLogging(_ context.Context, d *Deployment, _ releases.Note, to *semver.Version) Result {
	if d.Config.LogConfig == "" {
		return ok("no log_config")
	}
	if d.logConfig == nil {
		return Result{Status: NotCheckable, Detail: "cannot read log_config " + d.Config.LogConfig}
	}
	if v, _ := d.logConfig["structured"].(bool); !v {
		return ok("log_config does not use structured: true")
	}
	detail := d.Config.LogConfig + " uses structured: true"
	fix := "rewrite the logging config with standard handlers and formatters"
	if atLeast(to, "1.54.0") {
		return blocker(detail+", which v1.54.0 removed", fix)
	}
	return action(detail+", which is deprecated", fix)
}

func checkWebclient(_ context.Context, d *Deployment, _ releases.Note, to *semver.Version) Result {
	var problems []string
	for _, l := range d.Config.Listeners {
		if l.Type == "webclient" {
			problems = append(problems, fmt.Sprintf("a webclient listener on port %d", l.Port))
		}
	}
	if v, ok := d.Config.Raw("web_client_location"); ok {
		if s, _ := v.(string); s != "" && !strings.HasPrefix(s, "http://") && !strings.HasPrefix(s, "https://") {
			problems = append(problems, fmt.Sprintf("web_client_location %q is not an http(s) URL", s))
		}
	}
	if len(problems) == 0 {
		return ok("no webclient listener; web_client_location is http(s) or unset")
	}
	fix := "remove webclient listeners and set web_client_location to an http(s) URL"
	if atLeast(to, "1.53.0") {
		return blocker(strings.Join(problems, "; ")+": a configuration error from v1.53.0", fix)
	}
	return action(strings.Join(problems, "; "), fix)
}

func checkEmailDelegate(_ context.Context, d *Deployment, _ releases.Note, to *semver.Version) Result {
	v, found := d.Config.Raw("account_threepid_delegates.email")
	if !found || v == nil || v == "" {
		return ok("account_threepid_delegates.email is not set")
	}
	fix := "remove account_threepid_delegates.email and configure the email section (at least notif_from and SMTP)"
	if atLeast(to, "1.66.0") {
		return blocker("account_threepid_delegates.email is set: an error at start-up from v1.66.0", fix)
	}
	return action("account_threepid_delegates.email is set", fix)
}

func checkTemplateDir(_ context.Context, d *Deployment, _ releases.Note, _ *semver.Version) Result {
	var set []string
	for _, k := range []string{"sso.template_dir", "account_validity.template_dir", "email.template_dir"} {
		if v, ok := d.Config.Raw(k); ok && v != nil {
			set = append(set, k)
		}
	}
	if len(set) == 0 {
		return ok("no template_dir setting")
	}
	return action(strings.Join(set, ", ")+" set", "move the templates to one directory and set templates.custom_template_directory")
}

func checkLegacyWorkers(_ context.Context, d *Deployment, _ releases.Note, _ *semver.Version) Result {
	var found []string
	for _, w := range d.Workers {
		if w.WorkerApp == "synapse.app.appservice" || w.WorkerApp == "synapse.app.user_dir" {
			found = append(found, fmt.Sprintf("worker %s is a %s", w.WorkerName, w.WorkerApp))
		}
	}
	for _, k := range []string{"notify_appservices", "update_user_directory"} {
		if d.Config.Has(k) {
			found = append(found, k+" is set")
		}
	}
	if len(found) == 0 {
		return ok("no appservice or user_dir worker types")
	}
	return action(strings.Join(found, "; "), "use synapse.app.generic_worker with notify_appservices_from_worker / update_user_directory_from_worker")
}

func truthy(v any, ok bool) bool {
	b, isBool := v.(bool)
	return ok && isBool && b
}

func checkOpenRegistration(_ context.Context, d *Deployment, _ releases.Note, _ *semver.Version) Result {
	if !truthy(d.Config.Raw("enable_registration")) {
		return ok("registration is disabled")
	}
	if truthy(d.Config.Raw("enable_registration_without_verification")) {
		return ok("enable_registration_without_verification is set")
	}
	if truthy(d.Config.Raw("enable_registration_captcha")) || truthy(d.Config.Raw("registration_requires_token")) {
		return ok("registration requires a captcha or a token")
	}
	if v, ok := d.Config.Raw("registrations_require_3pid"); ok {
		if l, _ := v.([]any); len(l) > 0 {
			return Result{Status: OK, Detail: "registration requires a 3PID"}
		}
	}
	return blocker("registration is enabled without email, captcha or token verification: Synapse will refuse to start",
		"require verification (registrations_require_3pid, enable_registration_captcha or registration_requires_token), or set enable_registration_without_verification: true")
}

func redisEnabled(d *Deployment) bool {
	return truthy(d.Config.Raw("redis.enabled"))
}

func checkRedis(_ context.Context, d *Deployment, _ releases.Note, to *semver.Version) Result {
	if !d.HasWorkers() {
		return na("no workers")
	}
	if redisEnabled(d) {
		return ok("workers replicate through Redis")
	}
	fix := "add a redis section (enabled: true), remove the TCP replication listener and worker_replication_port"
	if atLeast(to, "1.67.0") {
		return blocker("the deployment has workers and Redis is not enabled: direct TCP replication is gone from v1.67.0", fix)
	}
	return action("the deployment has workers and Redis is not enabled", fix)
}

func checkWorkerReplication(_ context.Context, d *Deployment, _ releases.Note, _ *semver.Version) Result {
	var found []string
	for _, w := range d.Workers {
		for _, k := range []string{"worker_replication_host", "worker_replication_http_port", "worker_replication_http_tls", "worker_replication_port"} {
			if w.Has(k) {
				found = append(found, fmt.Sprintf("%s: %s", w.Files[len(w.Files)-1], k))
			}
		}
	}
	if len(found) == 0 {
		if !d.HasWorkers() {
			return na("no workers")
		}
		return ok("no worker_replication_* settings")
	}
	return action(strings.Join(found, "; "), "remove them and add the main process to instance_map as main")
}

func checkInstanceMap(_ context.Context, d *Deployment, _ releases.Note, _ *semver.Version) Result {
	if !d.HasWorkers() {
		return na("no workers")
	}
	if v, found := d.Config.Raw("instance_map"); found {
		if m, _ := v.(map[string]any); m != nil {
			if _, has := m["main"]; has {
				return ok("instance_map lists main")
			}
		}
	}
	return action("the deployment has workers but instance_map has no main entry", "add main (host and port of the main process's replication listener) to instance_map")
}

func checkUpgradeTogether(_ context.Context, d *Deployment, n releases.Note, _ *semver.Version) Result {
	if !d.HasWorkers() {
		return na("no workers")
	}
	return action(fmt.Sprintf("this replication change is incompatible across versions: stop the main process and all workers, upgrade them together to v%s or later, and start them together", n.Version),
		"synctl -a <worker dir> restart <config>")
}

func appserviceWorker(d *Deployment) string {
	for _, w := range d.Workers {
		if w.WorkerApp == "synapse.app.appservice" {
			return w.WorkerName
		}
	}
	if v, ok := d.Config.Raw("notify_appservices_from_worker"); ok {
		if s, _ := v.(string); s != "" {
			return s
		}
	}
	return ""
}

func checkAppserviceWorker(ctx context.Context, d *Deployment, _ releases.Note, _ *semver.Version) Result {
	if d.DB != nil && d.DB.Engine == db.Postgres {
		for _, s := range sequences.Known {
			if s.Name != "application_services_txn_id_seq" {
				continue
			}
			states, err := sequences.Read(ctx, d.DB, d.DB)
			if err == nil {
				for _, st := range states {
					if st.Name == s.Name && st.Behind() {
						return blocker(fmt.Sprintf("%s is at %d but %d is in use", s.Name, st.LastValue, st.Needed()),
							fmt.Sprintf("with everything stopped: SELECT setval('%s', %d)", s.Name, st.Needed()))
					}
				}
			}
		}
	}
	if !d.HasWorkers() {
		return na("no workers: upgrade as normal")
	}
	if w := appserviceWorker(d); w != "" {
		return action(fmt.Sprintf("worker %s sends application service traffic: stop it while the database is upgraded", w), "synctl -w <worker config of "+w+"> stop <config>")
	}
	return action("the deployment has workers: if one of them handles application service traffic, stop it while the database is upgraded", "")
}

func checkExpiryTime(_ context.Context, d *Deployment, _ releases.Note, _ *semver.Version) Result {
	for _, k := range []string{"expiry_time", "caches.expiry_time"} {
		if v, ok := d.Config.Raw(k); ok && v != nil {
			return action(k+" is set (deprecated)", "use caches.expire_caches and caches.cache_entry_ttl")
		}
	}
	return ok("expiry_time is not set")
}

func checkReindexSpace(ctx context.Context, d *Deployment, _ releases.Note, _ *semver.Version) Result {
	if d.DB == nil || d.DB.Engine != db.Postgres {
		return na("not a PostgreSQL database")
	}
	var size int64
	if err := d.DB.QueryRowContext(ctx, "SELECT pg_relation_size('events_order_room')").Scan(&size); err != nil {
		return Result{Status: NotCheckable, Detail: "cannot read the size of events_order_room"}
	}
	return ok(fmt.Sprintf("events_order_room is %.1f MB: keep at least %.1f MB free during the re-index", float64(size)/1e6, 4*float64(size)/1e6))
}

func checkRust(_ context.Context, _ *Deployment, _ releases.Note, to *semver.Version) Result {
	min, _ := releases.FloorFor(to, "rust")
	need := "a recent Rust"
	if min != nil {
		need = "Rust " + min.String() + " or newer"
	}
	return Result{Status: NotCheckable, Detail: "only for installations built from a source checkout: they need " + need, Command: "rustc --version"}
}

// The audience detectors.

func appservices(d *Deployment) bool {
	v, ok := d.Config.Raw("app_service_config_files")
	l, _ := v.([]any)
	return ok && len(l) > 0
}

func modules(d *Deployment) bool {
	for _, k := range []string{"modules", "spam_checker", "third_party_event_rules", "password_providers"} {
		if v, ok := d.Config.Raw(k); ok && v != nil {
			if l, isList := v.([]any); isList && len(l) == 0 {
				continue
			}
			return true
		}
	}
	return false
}

func sso(d *Deployment) bool {
	for _, k := range []string{"oidc_providers", "oidc_config", "saml2_config", "cas_config"} {
		if v, ok := d.Config.Raw(k); ok && v != nil {
			return true
		}
	}
	return false
}

func metrics(d *Deployment) bool {
	if truthy(d.Config.Raw("enable_metrics")) {
		return true
	}
	for _, l := range d.Config.Listeners {
		if l.Type == "metrics" || l.HasResource("metrics") {
			return true
		}
	}
	return false
}

func templates(d *Deployment) bool {
	for _, k := range []string{"templates.custom_template_directory", "sso.template_dir", "account_validity.template_dir", "email.template_dir"} {
		if v, ok := d.Config.Raw(k); ok && v != nil {
			return true
		}
	}
	return false
}

func xForwarded(d *Deployment) bool {
	for _, l := range d.Config.Listeners {
		if l.XForwarded {
			return true
		}
	}
	return false
}
