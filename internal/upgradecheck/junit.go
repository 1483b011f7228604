package upgradecheck

import (
	"encoding/xml"
	"fmt"
	"strings"
)

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

// JUnit renders the report as a JUnit XML document for CI: one test case
// per note and database fact; blockers and actions fail, notes that do
// not apply or cannot be checked are skipped.
func (r *Report) JUnit() ([]byte, error) {
	s := junitSuite{Name: fmt.Sprintf("upgrade-check %s -> %s", r.From, r.To)}
	for _, f := range append(append([]Finding{}, r.Findings...), r.Database...) {
		class := "database"
		if f.Note.Version != "" {
			class = "v" + f.Note.Version
		}
		c := junitCase{Class: class, Name: f.Note.ID + ": " + f.Note.Title, Out: f.URL}
		text := strings.TrimSpace(f.Detail + "\n" + f.Command)
		switch f.Status {
		case Blocker, Action:
			c.Failure = &junitMessage{Message: string(f.Status) + ": " + f.Detail, Text: text}
			s.Failures++
		case NotApplicable, NotCheckable:
			c.Skipped = &junitMessage{Message: string(f.Status)}
			s.Skipped++
		}
		s.Cases = append(s.Cases, c)
		s.Tests++
	}
	data, err := xml.MarshalIndent(junitSuites{Suites: []junitSuite{s}}, "", "  ")
	if err != nil {
		return nil, err
	}
	return append([]byte(xml.Header), append(data, '\n')...), nil
}
