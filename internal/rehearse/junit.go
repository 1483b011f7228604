package rehearse

import (
	"time"

	"hsops/internal/junit"
	"hsops/internal/upgradecheck"
)

// JUnit renders the report as a JUnit XML document for CI: one test case
// per delta and per background update (with its time; a failure carries the
// fix) and one per check, so that a CI system shows which step failed.
func (rep *Report) JUnit() ([]byte, error) {
	var suites junit.Suites
	for _, d := range rep.Databases {
		s := &junit.Suite{Name: "rehearse " + d.Source}
		add := func(class, name string, st *Step, failure, skipped string) {
			c := junit.Case{Class: class, Name: name}
			if st != nil && st.Millis >= 0 {
				c.Time = junit.Duration(time.Duration(st.Millis) * time.Millisecond)
			}
			switch {
			case failure != "":
				c.Failure = &junit.Message{Message: failure, Text: failure}
			case skipped != "":
				c.Skipped = &junit.Message{Message: skipped}
			}
			s.Add(c)
		}
		for i := range d.Deltas {
			st := &d.Deltas[i]
			fail := ""
			if !st.OK {
				fail = "failed: " + st.Error
			}
			add("schema", st.Name, st, fail, "")
		}
		for i := range d.Updates {
			st := &d.Updates[i]
			fail, skip := "", ""
			switch {
			case !st.Ran:
				skip = st.Error
			case !st.OK:
				fail = "failed: " + st.Error
			}
			add("background", st.Name, st, fail, skip)
		}
		for _, f := range d.Checks {
			fail := ""
			if f.Status == upgradecheck.Blocker {
				fail = f.Detail
			}
			add("checks", f.Note.Title, nil, fail, "")
		}
		if rep.Failure != nil && rep.Failure.Fix != "" && (rep.Failure.Database == "" || rep.Failure.Database == d.Label) {
			for i := range s.Cases {
				if s.Cases[i].Failure != nil && s.Cases[i].Name == rep.Failure.Step {
					s.Cases[i].Failure.Text += "\nfix: " + rep.Failure.Fix
				}
			}
		}
		suites.Suites = append(suites.Suites, s)
	}
	return suites.Marshal()
}
