package rehearse

import (
	"encoding/xml"
	"fmt"

	"hsops/internal/upgradecheck"
)

// The JUnit report of a rehearsal: test cases with their times.
type rehearsalSuites struct {
	XMLName xml.Name         `xml:"testsuites"`
	Suites  []rehearsalSuite `xml:"testsuite"`
}

type rehearsalSuite struct {
	Name     string          `xml:"name,attr"`
	Tests    int             `xml:"tests,attr"`
	Failures int             `xml:"failures,attr"`
	Skipped  int             `xml:"skipped,attr"`
	Cases    []rehearsalCase `xml:"testcase"`
}

type rehearsalCase struct {
	Class   string            `xml:"classname,attr"`
	Name    string            `xml:"name,attr"`
	Time    string            `xml:"time,attr,omitempty"`
	Failure *rehearsalMessage `xml:"failure,omitempty"`
	Skipped *rehearsalMessage `xml:"skipped,omitempty"`
}

// JUnit renders the report as a JUnit XML document for CI: one test case
// per delta and per background update (with its time; a failure carries the
// fix) and one per check, so that a CI system shows which step failed.
func (rep *Report) JUnit() ([]byte, error) {
	var suites rehearsalSuites
	for _, d := range rep.Databases {
		s := rehearsalSuite{Name: "rehearse " + d.Source}
		add := func(class, name string, st *Step, failure, skipped string) {
			c := rehearsalCase{Class: class, Name: name}
			if st != nil && st.Millis >= 0 {
				c.Time = fmt.Sprintf("%.3f", float64(st.Millis)/1000)
			}
			switch {
			case failure != "":
				c.Failure = &rehearsalMessage{Message: failure, Text: failure}
				s.Failures++
			case skipped != "":
				c.Skipped = &rehearsalMessage{Message: skipped}
				s.Skipped++
			}
			s.Cases = append(s.Cases, c)
			s.Tests++
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
	data, err := xml.MarshalIndent(suites, "", "  ")
	if err != nil {
		return nil, err
	}
	return append([]byte(xml.Header), append(data, '\n')...), nil
}

type rehearsalMessage struct {
	Message string `xml:"message,attr"`
	Text    string `xml:",chardata"`
}
