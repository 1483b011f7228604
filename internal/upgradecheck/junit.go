package upgradecheck

import (
	"fmt"
	"strings"

	"hsops/internal/junit"
)

// JUnit renders the report as a JUnit XML document for CI: one test case
// per note and database fact; blockers and actions fail, notes that do
// not apply or cannot be checked are skipped.
func (r *Report) JUnit() ([]byte, error) {
	s := &junit.Suite{Name: fmt.Sprintf("upgrade-check %s -> %s", r.From, r.To)}
	for _, f := range append(append([]Finding{}, r.Findings...), r.Database...) {
		class := "database"
		if f.Note.Version != "" {
			class = "v" + f.Note.Version
		}
		c := junit.Case{Class: class, Name: f.Note.ID + ": " + f.Note.Title, Out: f.URL}
		text := strings.TrimSpace(f.Detail + "\n" + f.Command)
		switch f.Status {
		case Blocker, Action:
			c.Failure = &junit.Message{Message: string(f.Status) + ": " + f.Detail, Text: text}
		case NotApplicable, NotCheckable:
			c.Skipped = &junit.Message{Message: string(f.Status)}
		}
		s.Add(c)
	}
	return (&junit.Suites{Suites: []*junit.Suite{s}}).Marshal()
}
