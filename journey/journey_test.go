// Package journey runs the operator's journey end to end with the real
// binaries: a homeserver generated, started, used, snapshotted, ported to
// PostgreSQL, switched over; and an old deployment with a corrupted
// state_group_edges table checked, repaired, upgraded, rolled back and
// upgraded again, its messages intact at every step.
package journey

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"hsops/internal/catalog"
	"hsops/internal/config"
	"hsops/internal/db"
	"hsops/internal/dbtest"
	"hsops/internal/niotest"
	"hsops/internal/pgtest"
	"hsops/internal/rowsum"
	"hsops/internal/testbin"
	"hsops/schema"
	"hsops/schema/engine"
)

var binDir string

// The journeys run in parallel (t.Parallel, two at a time by default):
// each has its own directory, loopback ports, databases and processes, and
// most of a journey is waiting for the tools it runs. The kill journeys
// (rehearse_test.go) run on their own, before them.

func TestMain(m *testing.M) {
	dir, err := testbin.TempDir("hsops/cmd/...")
	if err != nil {
		fmt.Fprintf(os.Stderr, "build the tools: %v\n", err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	pgtest.Stop()
	os.RemoveAll(dir)
	os.Exit(code)
}

// operator runs the tools in a directory and keeps a transcript.
type operator struct {
	t      *testing.T
	dir    string
	config string
	script strings.Builder
}

func newOperator(t *testing.T) *operator {
	t.Helper()
	dir := t.TempDir()
	o := &operator{t: t, dir: dir, config: filepath.Join(dir, "hs", "homeserver.yaml")}
	if err := os.MkdirAll(filepath.Join(dir, "hs"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Never leave a homeserver running behind a failed test.
		cmd := exec.Command(filepath.Join(binDir, "synctl"), "stop", o.config, "--timeout", "10s", "--kill")
		cmd.Dir = dir
		_ = cmd.Run()
		if t.Failed() || os.Getenv("HSOPS_JOURNEY_TRANSCRIPT") != "" {
			t.Logf("transcript:\n%s", o.script.String())
		}
		if p := os.Getenv("HSOPS_JOURNEY_TRANSCRIPT"); p != "" {
			_ = os.WriteFile(p+"-"+strings.ReplaceAll(t.Name(), "/", "-")+".txt", []byte(o.script.String()), 0o644)
		}
		// A failed journey's transcript stops short: its golden file
		// would only repeat the failure.
		if !t.Failed() && !t.Skipped() {
			checkGolden(t, o.script.String())
		}
	})
	return o
}

// run runs a tool and checks its exit code; it returns the output.
func (o *operator) run(wantCode int, tool string, args ...string) string {
	o.t.Helper()
	cmd := exec.Command(filepath.Join(binDir, tool), args...)
	cmd.Dir = o.dir
	cmd.Env = append(os.Environ(), "NO_COLOR=1")
	t0 := time.Now()
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		o.t.Fatalf("%s: %v", tool, err)
	}
	text := strings.ReplaceAll(string(out), o.dir, "/srv/matrix")
	fmt.Fprintf(&o.script, "$ %s %s\n%s", tool, strings.ReplaceAll(strings.Join(args, " "), o.dir, "/srv/matrix"), text)
	if code != 0 {
		fmt.Fprintf(&o.script, "(exit %d)\n", code)
	}
	o.script.WriteString("\n")
	if code != wantCode {
		o.t.Fatalf("%s %s: exit %d, want %d (%s)\n%s", tool, strings.Join(args, " "), code, wantCode, time.Since(t0).Round(time.Millisecond), out)
	}
	return string(out)
}

// must checks that out matches a regular expression and returns the first
// group (or the match).
func (o *operator) must(out, pattern string) string {
	o.t.Helper()
	m := regexp.MustCompile(pattern).FindStringSubmatch(out)
	if m == nil {
		o.t.Fatalf("no match for %q in:\n%s", pattern, out)
	}
	return m[len(m)-1]
}

// editConfig rewrites the homeserver.yaml.
func (o *operator) editConfig(edit func(string) string) {
	o.t.Helper()
	data, err := os.ReadFile(o.config)
	if err != nil {
		o.t.Fatal(err)
	}
	if err := os.WriteFile(o.config, []byte(edit(string(data))), 0o600); err != nil {
		o.t.Fatal(err)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// generate writes the homeserver.yaml with --generate-config, points its
// listener at a free loopback port and hashes passwords with bcrypt's
// cheapest cost: at Synapse's 12 rounds every registration and password
// login of the journeys costs a quarter of a second of CPU, and what the
// journeys check does not depend on it.
func (o *operator) generate() {
	o.t.Helper()
	o.run(0, "homeserver", "-c", o.config, "--generate-config", "--server-name", "example.org", "--report-stats", "no")
	port := freePort(o.t)
	o.editConfig(func(s string) string {
		s = strings.Replace(s, "port: 8008", fmt.Sprintf("port: %d", port), 1)
		s = strings.Replace(s, "bind_addresses: ['::1', '127.0.0.1']", "bind_addresses: ['127.0.0.1']", 1)
		return s + "bcrypt_rounds: 4\n"
	})
}

var sqliteSection = regexp.MustCompile(`(?m)^database:\n(?:  .*\n)+`)

// usePostgres switches the config's database section to a PostgreSQL one.
func (o *operator) usePostgres(pg pgtest.Database) {
	o.t.Helper()
	o.editConfig(func(s string) string {
		if !sqliteSection.MatchString(s) {
			o.t.Fatalf("no database section in:\n%s", s)
		}
		return sqliteSection.ReplaceAllString(s, pg.YAML())
	})
}

// dbConfig is the config's database.
func (o *operator) dbConfig() config.Database {
	o.t.Helper()
	cfg, err := config.Load(o.config)
	if err != nil {
		o.t.Fatal(err)
	}
	dbc, err := cfg.MainDatabase()
	if err != nil {
		o.t.Fatal(err)
	}
	return dbc
}

func (o *operator) open() *db.DB {
	o.t.Helper()
	d, err := db.Open(context.Background(), o.dbConfig(), db.Options{})
	if err != nil {
		o.t.Fatal(err)
	}
	return d
}

// TestJourney_SQLiteToPostgres is the move of a working homeserver from
// SQLite to PostgreSQL: a snapshot ported while it serves, then the switch
// in one command (port_db --switch-config).
func TestJourney_SQLiteToPostgres(t *testing.T) {
	t.Parallel()
	// The database first: cleanups run last first, so the homeserver is
	// stopped before the database is emptied for another test.
	pg := pgtest.NewDatabase(t)
	o := newOperator(t)
	o.generate()
	o.run(0, "synctl", "start", o.config)
	o.run(0, "hsload", "http", "-c", o.config, "--users", "4", "--rooms", "2", "--members", "4", "--messages", "200",
		"--reads", "20", "--searches", "10", "--concurrency", "4", "--prefix", "alice")
	o.run(0, "synctl", "stop", o.config)

	// A snapshot of the stopped homeserver, then more traffic.
	live := filepath.Join(o.dir, "hs", "homeserver.db")
	snapshot := filepath.Join(o.dir, "snapshot.db")
	data, err := os.ReadFile(live)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(snapshot, data, 0o600); err != nil {
		t.Fatal(err)
	}
	o.run(0, "synctl", "start", o.config)
	o.run(0, "hsload", "http", "-c", o.config, "--users", "3", "--rooms", "1", "--members", "3", "--messages", "100",
		"--reads", "10", "--searches", "5", "--concurrency", "3", "--prefix", "bob")
	check := []string{"check", "-c", o.config, "--login", "alice-0:load-alice-0", "--login", "bob-0:load-bob-0"}
	before := o.run(0, "hsload", append(check, "--expect-messages", "300")...)
	digest := o.must(before, `300 messages \(digest ([0-9a-f]+)\)`)

	// Port the snapshot while the homeserver runs on the live file.
	pgConfig := filepath.Join(o.dir, "postgres.yaml")
	if err := os.WriteFile(pgConfig, []byte("server_name: example.org\n"+pg.YAML()), 0o600); err != nil {
		t.Fatal(err)
	}
	o.must(o.run(0, "port_db", "--sqlite-database", snapshot, "--postgres-config", pgConfig), `(?i)done|ported|copied`)
	// Then the switch in one command: a pre-copy while it serves, the stop,
	// the final port of the live file (only what is new since the
	// snapshot), the config's database section rewritten, the start.
	plan := o.run(0, "port_db", "--sqlite-database", live, "--postgres-config", pgConfig, "--switch-config", o.config, "--dry-run")
	o.must(plan, `nothing was changed \(--dry-run\)`)
	switched := o.run(0, "port_db", "--sqlite-database", live, "--postgres-config", pgConfig, "--switch-config", o.config)
	o.must(switched, `downtime: [0-9.]+s`)
	o.must(switched, `the SQLite config is kept as .*homeserver\.yaml\.sqlite-`)
	if got := o.dbConfig(); !got.IsPostgres() {
		t.Fatalf("after the switch the config names %s", got)
	}
	if data, err := os.ReadFile(o.config); err != nil || !strings.Contains(string(data), "# Generated by: homeserver --generate-config") {
		t.Fatalf("the config's comments did not survive the switch (%v):\n%s", err, data)
	}
	after := o.run(0, "hsload", append(check, "--expect-messages", "300", "--search", "upgrade", "--send")...)
	if got := o.must(after, `300 messages \(digest ([0-9a-f]+)\)`); got != digest {
		t.Fatalf("digest after the move %s, before %s", got, digest)
	}
	if hits := o.must(after, `search "upgrade": (\d+) hits`); hits == "0" {
		t.Error("search found nothing on PostgreSQL")
	}
	o.must(after, `sent \$`)
	o.run(0, "hsload", append(check, "--expect-messages", "301")...)
	o.run(0, "update_database", "upgrade-check", "-c", o.config, "--to", "1.98.0")
	o.run(0, "synctl", "stop", o.config)
}

// TestJourney_OldDeploymentRepairUpgradeRollback starts from a database
// created at schema 69 whose state_group_edges a restored dump duplicated.
func TestJourney_OldDeploymentRepairUpgradeRollback(t *testing.T) {
	t.Parallel()
	dbtest.Engines(t, func(t *testing.T, e db.Engine) {
		var pg pgtest.Database
		if e == db.Postgres {
			pg = pgtest.NewDatabase(t) // before the operator: see above
		}
		o := newOperator(t)
		o.generate()
		if e == db.Postgres {
			o.usePostgres(pg)
		}
		o.run(0, "hsload", "generate", "-c", o.config, "--schema-version", "69", "--users", "10", "--rooms", "4", "--members", "10", "--messages", "400")
		d := o.open()
		var messages int
		if err := d.QueryRow("SELECT count(*) FROM events WHERE type = 'm.room.message'").Scan(&messages); err != nil {
			t.Fatal(err)
		}
		// The restored dump: five edges twice.
		if _, err := d.Exec(`INSERT INTO state_group_edges (state_group, prev_state_group)
			SELECT state_group, prev_state_group FROM state_group_edges WHERE state_group IN
			(SELECT state_group FROM state_group_edges ORDER BY state_group LIMIT 5)`); err != nil {
			t.Fatal(err)
		}
		d.Close()

		out := o.run(2, "update_database", "upgrade-check", "-c", o.config, "--to", "1.98.0")
		o.must(out, `state_group_edges`)
		o.must(o.run(0, "update_database", "repair", "state-group-edges", "-c", o.config), `removed 5 rows in one transaction`)
		o.run(0, "update_database", "upgrade-check", "-c", o.config, "--to", "1.98.0")
		o.must(o.run(0, "update_database", "-c", o.config, "--run-background-updates"), `upgraded from schema 69 to 83`)

		check := []string{"check", "-c", o.config, "--token", "syt_gen_0", "--expect-messages", fmt.Sprint(messages)}
		o.run(0, "synctl", "start", o.config)
		digest := o.must(o.run(0, "hsload", check...), `messages \(digest ([0-9a-f]+)\)`)
		o.run(0, "synctl", "stop", o.config)

		// Roll back to 69: the schema of a fresh 69, the same events.
		d = o.open()
		sums := eventSums(t, d)
		d.Close()
		o.run(11, "update_database", "rollback", "-c", o.config, "--to-schema", "69", "--yes")
		o.must(o.run(0, "update_database", "rollback", "-c", o.config, "--to-schema", "69", "--yes", "--allow-data-loss"), `rolled back from schema 83 to 69`)
		d = o.open()
		fresh := dbtest.New(t, e).Open(t)
		if _, err := engine.Schema().Apply(context.Background(), fresh, schema.Options{Target: 69}); err != nil {
			t.Fatal(err)
		}
		got, want := dbtest.Dump(t, d), dbtest.Dump(t, fresh)
		if diff := catalog.Diff(got, want); len(diff) > 0 {
			t.Fatalf("the rolled-back schema differs from a fresh 69:\n%s", strings.Join(diff, "\n"))
		}
		if after := eventSums(t, d); after != sums {
			t.Fatalf("events changed in the rollback:\n%s\nwas\n%s", after, sums)
		}
		d.Close()

		// Started again, the engine upgrades it back; nothing was lost.
		o.run(0, "synctl", "start", o.config)
		if got := o.must(o.run(0, "hsload", append(check, "--send")...), `messages \(digest ([0-9a-f]+)\)`); got != digest {
			t.Fatalf("digest after rollback and upgrade %s, before %s", got, digest)
		}
		o.run(0, "synctl", "stop", o.config)
		o.must(o.run(0, "update_database", "status", "-c", o.config), `schema version: +83`)
	})
}

// eventSums are the checksums of the tables that hold the messages.
func eventSums(t *testing.T, d *db.DB) string {
	t.Helper()
	ctx := context.Background()
	var b strings.Builder
	for _, tbl := range []string{"events", "event_json", "event_edges", "state_groups", "state_groups_state", "room_memberships", "current_state_events"} {
		cols, err := rowsum.Columns(ctx, d, d, tbl)
		if err != nil {
			t.Fatal(err)
		}
		var keep []rowsum.Column
		for _, c := range cols {
			// event_stream_ordering (74) is not there at 69.
			if c.Name != "event_stream_ordering" {
				keep = append(keep, c)
			}
		}
		sum, err := rowsum.Table(ctx, d, db.QuoteIdent(tbl), keep)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s: %s\n", tbl, sum)
	}
	return b.String()
}

// TestJourney_ClientSyncsOn has a real client (matrix-nio) use the
// homeserver, then the operator roll it back, start it again (the engine
// upgrades it back), port it to PostgreSQL, and roll that back too; after
// each step the same client syncs on from its old next_batch and gets
// exactly the messages it had not seen, none twice.
func TestJourney_ClientSyncsOn(t *testing.T) {
	t.Parallel()
	py := niotest.Python(t)
	pg := pgtest.NewDatabase(t)
	o := newOperator(t)
	o.generate()
	o.editConfig(func(s string) string {
		return s + "\nenable_registration: true\nenable_registration_without_verification: true\n"
	})
	state := filepath.Join(o.dir, "nio.json")
	base := func() string {
		cfg, err := config.Load(o.config)
		if err != nil {
			t.Fatal(err)
		}
		return config.BaseURL(cfg.Listeners)
	}
	session := func(phase string, args ...string) {
		t.Helper()
		o.run(0, "synctl", "start", o.config)
		out := niotest.Run(t, py, phase, state, base(), args...)
		fmt.Fprintf(&o.script, "$ python3 testdata/nio/client.py %s nio.json %s\n%s\n", phase, strings.Join(args, " "), out)
		o.run(0, "synctl", "stop", o.config)
	}
	session("first")

	// Rolled back to 69 and started again: the engine upgrades it to 83.
	o.must(o.run(0, "update_database", "rollback", "-c", o.config, "--to-schema", "69", "--yes", "--allow-data-loss"), `rolled back from schema 83 to 69`)
	session("resume")

	// Ported to PostgreSQL (its background updates done first).
	o.run(0, "update_database", "-c", o.config, "--run-background-updates")
	pgConfig := filepath.Join(o.dir, "postgres.yaml")
	if err := os.WriteFile(pgConfig, []byte("server_name: example.org\n"+pg.YAML()), 0o600); err != nil {
		t.Fatal(err)
	}
	o.run(0, "port_db", "--sqlite-database", filepath.Join(o.dir, "hs", "homeserver.db"), "--postgres-config", pgConfig)
	o.usePostgres(pg)
	session("resume")

	// Rolled back on PostgreSQL, upgraded again at start.
	o.must(o.run(0, "update_database", "rollback", "-c", o.config, "--to-schema", "69", "--yes", "--allow-data-loss"), `rolled back from schema 83 to 69`)
	session("resume", "--no-send")
}
