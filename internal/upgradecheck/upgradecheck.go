// Package upgradecheck tells which of Synapse's upgrade notes between two
// releases apply to a deployment, and checks the deployment against each of
// them that can be checked: its configuration (main process and workers),
// its database (engine, version, locale, duplicated state_group_edges rows,
// sequences, pending background updates) and its shape (workers, Redis,
// application services, modules, SSO ...).
package upgradecheck

import (
	"context"
	"fmt"
	"os"
	"sort"

	"github.com/Masterminds/semver/v3"
	"gopkg.in/yaml.v3"

	"hsops/internal/config"
	"hsops/internal/db"
	"hsops/internal/fault"
	"hsops/internal/plural"
	"hsops/internal/releases"
	"hsops/schema"
)

// Status is the outcome of a note for the deployment.
type Status string

// The statuses, from worst to best.
const (
	Blocker       Status = "blocker"
	Action        Status = "action"
	NotCheckable  Status = "not-checkable"
	OK            Status = "ok"
	NotApplicable Status = "not-applicable"
)

// Deployment is what the checks look at.
type Deployment struct {
	Config *config.Config
	// ConfigArg is how the operator named the config (for commands).
	ConfigArg string
	// Workers are the worker configs (each merged with the main config).
	Workers []*config.Config
	// DB is the main database, open read-only; nil when unavailable.
	DB    *db.DB
	State *schema.State
	// logConfig is the parsed log_config file, if any.
	logConfig map[string]any
}

// HasWorkers reports whether the deployment runs workers.
func (d *Deployment) HasWorkers() bool {
	if len(d.Workers) > 0 {
		return true
	}
	if v, ok := d.Config.Raw("instance_map"); ok {
		if m, ok := v.(map[string]any); ok {
			for k := range m {
				if k != "main" && k != "master" {
					return true
				}
			}
		}
	}
	return false
}

// LoadLogConfig reads the log_config file named by the config.
func (d *Deployment) LoadLogConfig() {
	if d.Config.LogConfig == "" {
		return
	}
	data, err := os.ReadFile(d.Config.LogConfig)
	if err != nil {
		return
	}
	var m map[string]any
	if yaml.Unmarshal(data, &m) == nil {
		d.logConfig = m
	}
}

// Finding is one note and what the check found.
type Finding struct {
	Note    releases.Note `json:"note"`
	URL     string        `json:"url"`
	Status  Status        `json:"status"`
	Detail  string        `json:"detail,omitempty"`
	Command string        `json:"command,omitempty"`
}

// Report is an upgrade check's outcome.
type Report struct {
	From       string `json:"from"`
	FromSource string `json:"from_source"`
	To         string `json:"to"`
	Downgrade  bool   `json:"downgrade"`
	// NewestNotes is the newest release the notes data knows.
	NewestNotes string    `json:"newest_notes"`
	Deployment  string    `json:"deployment"`
	Findings    []Finding `json:"findings"`
	// Database are checks of the database not tied to one note.
	Database []Finding `json:"database"`
	// RollbackFloor is the oldest release that can run on the database
	// after the upgrade without changes.
	RollbackFloor string `json:"rollback_floor,omitempty"`
	Summary       string `json:"summary"`
	// FromVersion and ToVersion are From and To as versions (CheckDeployment sets
	// them).
	FromVersion *semver.Version `json:"-"`
	ToVersion   *semver.Version `json:"-"`
}

// Counts tallies findings by status.
func (r *Report) Counts() map[Status]int {
	c := map[Status]int{}
	for _, f := range append(append([]Finding{}, r.Findings...), r.Database...) {
		c[f.Status]++
	}
	return c
}

// Verdict is nil when nothing is to be done, else an error of class
// fault.Blockers (something blocks the upgrade) or fault.Actions (actions
// are needed first).
func (r *Report) Verdict() error {
	c := r.Counts()
	switch {
	case c[Blocker] > 0:
		return fault.Errorf(fault.Blockers, "", "something blocks the upgrade (%s)", r.Summary)
	case c[Action] > 0:
		return fault.Errorf(fault.Actions, "", "actions are needed before upgrading (%s)", r.Summary)
	}
	return nil
}

// Run checks the notes after the installed release, up to to, and the
// database whatever the range: the claim about the installed release, the
// target release against the database's compat version, and the checks of
// databaseFacts.
func Run(ctx context.Context, d *Deployment, inst Installation, to *semver.Version) *Report {
	from := inst.Version
	r := &Report{From: "unknown", FromSource: inst.Source, To: "v" + to.String(), NewestNotes: "v" + releases.Newest().String(), Deployment: describe(d),
		Findings: []Finding{}, Database: []Finding{}}
	if from != nil {
		r.From = "v" + from.String()
	}
	if inst.Claim != nil {
		r.Database = append(r.Database, *inst.Claim)
	}
	checked := map[string]bool{}
	if from != nil && to.LessThan(from) {
		r.Downgrade = true
		r.Database = append(r.Database, downgrade(d, from, to))
	} else {
		if from != nil {
			for _, n := range releases.Between(from, to) {
				r.Findings = append(r.Findings, evaluate(ctx, d, n, to))
				checked[n.Check] = true
			}
		}
		target, opens := targetFact(d, to)
		if target != nil {
			r.Database = append(r.Database, *target)
		}
		if opens {
			r.RollbackFloor = rollbackFloor(d, to)
		}
	}
	r.Database = append(r.Database, databaseFacts(ctx, d, to, checked)...)
	// Newest release first, as on the upgrade page.
	sort.SliceStable(r.Findings, func(i, j int) bool {
		return r.Findings[j].Note.SemVer().LessThan(r.Findings[i].Note.SemVer())
	})
	c := r.Counts()
	r.Summary = fmt.Sprintf("%s, %s, %d ok, %d to read (not checkable), %d not applicable",
		plural.Count(c[Blocker], "blocker"), plural.Irregular(c[Action], "action needed", "actions needed"), c[OK], c[NotCheckable], c[NotApplicable])
	return r
}

func describe(d *Deployment) string {
	s := ""
	if d.DB != nil {
		s = d.DB.Desc
		if d.State != nil {
			owner := "Synapse"
			if d.State.Kind == schema.KindEngine {
				owner = "hsops engine"
			}
			s += fmt.Sprintf(" (%s, schema %d, compat %d)", owner, d.State.Version, d.State.Compat)
		}
	} else {
		s = "database not reachable"
	}
	if n := len(d.Workers); n > 0 {
		s += fmt.Sprintf("; %d workers", n)
	} else if d.HasWorkers() {
		s += "; workers (from instance_map)"
	} else {
		s += "; no workers"
	}
	return s
}

// evaluate decides a note's status: its check when it has one, else
// whether its audience is present.
func evaluate(ctx context.Context, d *Deployment, n releases.Note, to *semver.Version) Finding {
	f := Finding{Note: n, URL: n.URL()}
	if n.Check != "" {
		if check, ok := checks[n.Check]; ok {
			res := check(ctx, d, n, to)
			f.Status, f.Detail, f.Command = res.Status, res.Detail, res.Command
			return f
		}
	}
	if applies, known := audience(d, n.Applies); !applies && known {
		f.Status = NotApplicable
		return f
	}
	f.Status = NotCheckable
	f.Detail = "read it: hsops cannot check this for you"
	return f
}

// audience reports whether any of the note's audiences is present, and
// whether that could be decided at all.
func audience(d *Deployment, applies []string) (present, known bool) {
	known = true
	for _, a := range applies {
		switch a {
		case "everyone", "federation":
			return true, true
		case "workers":
			if d.HasWorkers() {
				return true, true
			}
		case "postgres":
			if d.DB != nil && d.DB.Engine == db.Postgres {
				return true, true
			}
			if d.DB == nil {
				known = false
			}
		case "sqlite":
			if d.DB != nil && d.DB.Engine == db.SQLite {
				return true, true
			}
			if d.DB == nil {
				known = false
			}
		case "appservices":
			if appservices(d) {
				return true, true
			}
		case "modules":
			if modules(d) {
				return true, true
			}
		case "sso":
			if sso(d) {
				return true, true
			}
		case "metrics":
			if metrics(d) {
				return true, true
			}
		case "email":
			if d.Config.Has("email") {
				return true, true
			}
		case "templates":
			if templates(d) {
				return true, true
			}
		case "registration":
			if v, _ := d.Config.Raw("enable_registration"); v == true {
				return true, true
			}
		case "reverse-proxy":
			if xForwarded(d) || d.Config.Has("public_baseurl") {
				return true, true
			}
			known = false
		default:
			// source, packages, admin-api, clients: not visible from here.
			known = false
		}
	}
	return false, known
}
