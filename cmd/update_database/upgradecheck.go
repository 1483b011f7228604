package main

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/Masterminds/semver/v3"
	"github.com/spf13/cobra"

	"hsops/internal/cli"
	"hsops/internal/config"
	"hsops/internal/fault"
	"hsops/internal/releases"
	"hsops/internal/upgradecheck"
	"hsops/schema"
)

type checkOptions struct {
	*globals
	from, to   string
	workersDir string
	junit      string
	server     string
}

func newUpgradeCheckCmd(ctx context.Context, g *globals) *cobra.Command {
	o := &checkOptions{globals: g}
	cmd := &cobra.Command{
		Use:   "upgrade-check --database-config homeserver.yaml --to VERSION [--from VERSION] [--workers DIR]",
		Short: "List the upgrade notes between two releases that apply to this deployment, and check them",
		Long: `upgrade-check reads Synapse's upgrade notes (as data) between the installed
release and --to, decides which apply to this deployment, and checks the
deployment against each that can be checked: configuration keys a release
removed or deprecated, the database (PostgreSQL version and locale, duplicated
state_group_edges rows, sequences, pending background updates) and its shape
(workers, Redis, application services, modules, SSO).

The installed release is --from, else what the running server answers on
/_synapse/admin/v1/server_version, else inferred from the database's schema
and compat versions (a range, said as such; the oldest is used). Workers are
read from --workers DIR (*.yaml, as synctl -a).

Exit: 0 nothing to do, 1 actions needed, 2 blockers; other codes are errors
(see update_database --help).`,
		Args: cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runUpgradeCheck(ctx, o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.to, "to", "", "the release to upgrade to (e.g. 1.80.0)")
	f.StringVar(&o.from, "from", "", "the installed release (default: ask the server, else infer from the database)")
	f.StringVar(&o.workersDir, "workers", "", "directory of worker configs (*.yaml)")
	f.StringVar(&o.junit, "junit", "", "also write a JUnit XML report to this file (for CI)")
	f.StringVar(&o.server, "server", "", "base URL of the running server (default: the config's first client listener)")
	return cmd
}

func newNotesCmd(g *globals) *cobra.Command {
	var from, to string
	cmd := &cobra.Command{
		Use:   "notes [--from VERSION] --to VERSION [--json]",
		Short: "Print Synapse's upgrade notes between two releases (no deployment needed)",
		Args:  cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if to == "" {
				return cli.Usagef("--to is required")
			}
			tv, err := releases.ParseVersion(to)
			if err != nil {
				return cli.Usagef("--to: %v", err)
			}
			var fv *semver.Version
			if from != "" {
				if fv, err = releases.ParseVersion(from); err != nil {
					return cli.Usagef("--from: %v", err)
				}
			}
			warnUnknown(g.stderr, fv, tv)
			if fv != nil && tv.LessThan(fv) {
				return cli.Usagef("--to v%s is older than --from v%s: that is a downgrade, which upgrade notes do not cover (update_database rollback --to-release %s --dry-run tells what a database needs)", tv, fv, tv)
			}
			notes := releases.Between(fv, tv)
			if g.json {
				out := cli.NewJSONLines(g.stdout)
				for _, n := range notes {
					out.Emit(map[string]any{"note": n, "url": n.URL()})
				}
				return nil
			}
			last := ""
			for i := len(notes) - 1; i >= 0; i-- {
				n := notes[i]
				if n.Version != last {
					fmt.Fprintf(g.stdout, "\nv%s\n", n.Version)
					last = n.Version
				}
				fmt.Fprintf(g.stdout, "  [%s] %s (%s)\n      %s\n      %s\n", n.Kind, n.Title, strings.Join(n.Applies, ", "), n.Summary, n.URL())
			}
			fmt.Fprintf(g.stdout, "\n%d notes; the data covers releases up to v%s\n", len(notes), releases.Newest())
			return nil
		},
	}
	cmd.Flags().StringVar(&from, "from", "", "the installed release (default: the beginning)")
	cmd.Flags().StringVar(&to, "to", "", "the release to upgrade to")
	return cmd
}

func runUpgradeCheck(ctx context.Context, o *checkOptions) error {
	if o.to == "" {
		return cli.Usagef("--to is required")
	}
	to, err := releases.ParseVersion(o.to)
	if err != nil {
		return cli.Usagef("--to: %v", err)
	}
	cfg, err := o.loadConfig()
	if err != nil {
		return err
	}
	d := &upgradecheck.Deployment{Config: cfg, ConfigArg: o.configArg()}
	d.LoadLogConfig()
	if o.workersDir != "" {
		files, err := filepath.Glob(filepath.Join(o.workersDir, "*.yaml"))
		if err != nil || len(files) == 0 {
			return fault.Wrap(fault.Config, fmt.Errorf("%w: no *.yaml worker config in %q", config.ErrNotFound, o.workersDir),
				"--workers takes the directory of the worker configs (as synctl -a); leave it out for a deployment without workers")
		}
		sort.Strings(files)
		for _, f := range files {
			w, err := config.Load(append(append([]string{}, o.configPaths...), f)...)
			if err != nil {
				return err
			}
			if w.IsWorker() {
				d.Workers = append(d.Workers, w)
			}
		}
	}
	dbc, err := cfg.MainDatabase()
	if err != nil {
		return err
	}
	// A database that cannot be read fails the check: a report without
	// its database checks (the state_group_edges duplicates, the locale)
	// would pass a CI gate that checked nothing.
	ro, st, err := inspect(ctx, dbc)
	if err != nil {
		return err
	}
	if ro != nil {
		defer ro.Close()
		d.DB, d.State = ro, st
	}

	from, source, err := o.installedVersion(ctx, cfg, st)
	if err != nil {
		return err
	}
	warnUnknown(o.stderr, from, to)
	report := upgradecheck.Run(ctx, d, from, source, to)
	if o.junit != "" {
		if err := writeJUnit(o.junit, report); err != nil {
			return err
		}
	}
	if o.json {
		cli.NewJSONLines(o.stdout).Emit(report)
	} else {
		printReport(o.stdout, report)
	}
	return report.Verdict()
}

// warnUnknown warns about versions that are not releases hsops knows: its
// facts (schema versions, floors, rollback floors) say nothing about them.
func warnUnknown(w io.Writer, vs ...*semver.Version) {
	all := releases.All()
	newest := all[len(all)-1]
	for _, v := range vs {
		if v == nil {
			continue
		}
		if _, ok := releases.Find(v); !ok {
			fmt.Fprintf(w, "update_database: warning: v%s is not a release hsops knows (its facts go up to %s): what depends on its schema version is not checked\n", v, newest.Tag())
		}
	}
}

// installedVersion is --from, else the running server's answer, else the
// oldest release matching the database's schema and compat versions.
func (o *checkOptions) installedVersion(ctx context.Context, cfg *config.Config, st *schema.State) (*semver.Version, string, error) {
	if o.from != "" {
		v, err := releases.ParseVersion(o.from)
		if err != nil {
			return nil, "", cli.Usagef("--from: %v", err)
		}
		return v, "--from", nil
	}
	base := o.server
	if base == "" {
		base = config.BaseURL(cfg.Listeners)
	}
	if base != "" {
		if v, how, ok := askServer(ctx, base); ok {
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
	return nil, "", cli.Usagef("cannot tell the installed release (no --from, no server answering, no matching schema): pass --from VERSION")
}

// askServer reads the running server's version. Synapse answers "1.98.0";
// the hsops engine answers its own version and its schema version, which
// maps to the releases with that schema.
func askServer(ctx context.Context, base string) (*semver.Version, string, bool) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(base, "/")+"/_synapse/admin/v1/server_version", nil)
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

var statusLabel = map[upgradecheck.Status]string{
	upgradecheck.Blocker: "BLOCKER", upgradecheck.Action: "ACTION", upgradecheck.OK: "ok",
	upgradecheck.NotCheckable: "read", upgradecheck.NotApplicable: "n/a",
}

func printFinding(w io.Writer, f upgradecheck.Finding) {
	fmt.Fprintf(w, "  %-8s %s\n", statusLabel[f.Status], f.Note.Title)
	if f.Detail != "" {
		fmt.Fprintf(w, "           %s\n", f.Detail)
	}
	if f.Command != "" {
		fmt.Fprintf(w, "           fix: %s\n", f.Command)
	}
	if f.Status == upgradecheck.NotCheckable && f.Note.Summary != "" {
		fmt.Fprintf(w, "           %s\n", f.Note.Summary)
	}
	if f.URL != "" && f.Status != upgradecheck.OK {
		fmt.Fprintf(w, "           %s\n", f.URL)
	}
}

func printReport(w io.Writer, r *upgradecheck.Report) {
	fmt.Fprintf(w, "upgrade check: %s -> %s\n", r.From, r.To)
	fmt.Fprintf(w, "installed release: %s (%s)\n", r.From, r.FromSource)
	fmt.Fprintf(w, "deployment: %s\n", r.Deployment)
	last := ""
	var notApplicable []upgradecheck.Finding
	for _, f := range r.Findings {
		if f.Status == upgradecheck.NotApplicable {
			notApplicable = append(notApplicable, f)
			continue
		}
		if f.Note.Version != last {
			fmt.Fprintf(w, "\nv%s\n", f.Note.Version)
			last = f.Note.Version
		}
		printFinding(w, f)
	}
	if len(r.Database) > 0 {
		fmt.Fprintf(w, "\nthe database\n")
		for _, f := range r.Database {
			printFinding(w, f)
		}
	}
	if len(notApplicable) > 0 {
		fmt.Fprintf(w, "\nnot applicable to this deployment (%d):\n", len(notApplicable))
		for _, f := range notApplicable {
			fmt.Fprintf(w, "  v%-8s %s (%s)\n", f.Note.Version, f.Note.Title, strings.Join(f.Note.Applies, ", "))
		}
	}
	if to, err := releases.ParseVersion(r.To); err == nil && releases.Newest().LessThan(to) {
		fmt.Fprintf(w, "\nnote: the upgrade notes data ends at %s; read the upgrade page for later releases\n", r.NewestNotes)
	}
	if r.RollbackFloor != "" {
		fmt.Fprintf(w, "\nafter upgrading to %s you can roll back to %s or later without database changes\n", r.To, r.RollbackFloor)
	}
	fmt.Fprintf(w, "\nresult: %s\n", r.Summary)
}

// JUnit report: one test case per note (and database fact); blockers and
// actions fail, not applicable and not checkable are skipped.
type junitSuites struct {
	XMLName xml.Name     `xml:"testsuites"`
	Suites  []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name     string      `xml:"name,attr"`
	Tests    int         `xml:"tests,attr"`
	Failures int         `xml:"failures,attr"`
	Skipped  int         `xml:"skipped,attr"`
	Cases    []junitCase `xml:"testcase"`
}

type junitCase struct {
	Class   string        `xml:"classname,attr"`
	Name    string        `xml:"name,attr"`
	Failure *junitMessage `xml:"failure,omitempty"`
	Skipped *junitMessage `xml:"skipped,omitempty"`
	Out     string        `xml:"system-out,omitempty"`
}

type junitMessage struct {
	Message string `xml:"message,attr"`
	Text    string `xml:",chardata"`
}

func writeJUnit(path string, r *upgradecheck.Report) error {
	s := junitSuite{Name: fmt.Sprintf("upgrade-check %s -> %s", r.From, r.To)}
	for _, f := range append(append([]upgradecheck.Finding{}, r.Findings...), r.Database...) {
		class := "database"
		if f.Note.Version != "" {
			class = "v" + f.Note.Version
		}
		c := junitCase{Class: class, Name: f.Note.ID + ": " + f.Note.Title, Out: f.URL}
		text := strings.TrimSpace(f.Detail + "\n" + f.Command)
		switch f.Status {
		case upgradecheck.Blocker, upgradecheck.Action:
			c.Failure = &junitMessage{Message: string(f.Status) + ": " + f.Detail, Text: text}
			s.Failures++
		case upgradecheck.NotApplicable, upgradecheck.NotCheckable:
			c.Skipped = &junitMessage{Message: string(f.Status)}
			s.Skipped++
		}
		s.Cases = append(s.Cases, c)
		s.Tests++
	}
	data, err := xml.MarshalIndent(junitSuites{Suites: []junitSuite{s}}, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append([]byte(xml.Header), append(data, '\n')...), 0o644)
}
