package upgradecheck

import (
	"fmt"
	"io"
	"strings"

	"hsops/internal/releases"
)

var statusLabel = map[Status]string{
	Blocker: "BLOCKER", Action: "ACTION", OK: "ok",
	NotCheckable: "read", NotApplicable: "n/a",
}

func formatFinding(w io.Writer, f Finding) {
	fmt.Fprintf(w, "  %-8s %s\n", statusLabel[f.Status], f.Note.Title)
	if f.Detail != "" {
		fmt.Fprintf(w, "           %s\n", f.Detail)
	}
	if f.Command != "" {
		fmt.Fprintf(w, "           fix: %s\n", f.Command)
	}
	if f.Status == NotCheckable && f.Note.Summary != "" {
		fmt.Fprintf(w, "           %s\n", f.Note.Summary)
	}
	if f.URL != "" && f.Status != OK {
		fmt.Fprintf(w, "           %s\n", f.URL)
	}
}

// Format prints the report for people: the notes that apply, newest
// release first, then the database's checks, then the notes that do not
// apply, and the result.
func (r *Report) Format(w io.Writer) {
	fmt.Fprintf(w, "upgrade check: %s -> %s\n", r.From, r.To)
	fmt.Fprintf(w, "installed release: %s (%s)\n", r.From, r.FromSource)
	fmt.Fprintf(w, "deployment: %s\n", r.Deployment)
	last := ""
	var notApplicable []Finding
	for _, f := range r.Findings {
		if f.Status == NotApplicable {
			notApplicable = append(notApplicable, f)
			continue
		}
		if f.Note.Version != last {
			fmt.Fprintf(w, "\nv%s\n", f.Note.Version)
			last = f.Note.Version
		}
		formatFinding(w, f)
	}
	if len(r.Database) > 0 {
		fmt.Fprintf(w, "\nthe database\n")
		for _, f := range r.Database {
			formatFinding(w, f)
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

// Label is the status as the report prints it (BLOCKER, ACTION, ok, ...).
func (s Status) Label() string { return statusLabel[s] }
