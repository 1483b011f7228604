// Package junit writes JUnit XML reports, the format CI systems read test
// results from: upgrade-check and rehearse write one for each run.
package junit

import (
	"encoding/xml"
	"fmt"
	"time"
)

// Suites is a report: one suite per database or run.
type Suites struct {
	XMLName xml.Name `xml:"testsuites"`
	Suites  []*Suite `xml:"testsuite"`
}

// Suite is one group of test cases, with their counts.
type Suite struct {
	Name     string `xml:"name,attr"`
	Tests    int    `xml:"tests,attr"`
	Failures int    `xml:"failures,attr"`
	Skipped  int    `xml:"skipped,attr"`
	Cases    []Case `xml:"testcase"`
}

// Case is one test case; at most one of Failure and Skipped is set.
type Case struct {
	Class   string   `xml:"classname,attr"`
	Name    string   `xml:"name,attr"`
	Time    string   `xml:"time,attr,omitempty"`
	Failure *Message `xml:"failure,omitempty"`
	Skipped *Message `xml:"skipped,omitempty"`
	Out     string   `xml:"system-out,omitempty"`
}

// Message is a failure's or a skip's message, with its text.
type Message struct {
	Message string `xml:"message,attr"`
	Text    string `xml:",chardata"`
}

// Duration is a case's time attribute.
func Duration(d time.Duration) string { return fmt.Sprintf("%.3f", d.Seconds()) }

// Add appends a case and counts it as a test, a failure or a skip.
func (s *Suite) Add(c Case) {
	switch {
	case c.Failure != nil:
		s.Failures++
	case c.Skipped != nil:
		s.Skipped++
	}
	s.Tests++
	s.Cases = append(s.Cases, c)
}

// Marshal renders the report as an indented XML document.
func (r *Suites) Marshal() ([]byte, error) {
	data, err := xml.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, err
	}
	return append([]byte(xml.Header), append(data, '\n')...), nil
}
