package junit

import (
	"strings"
	"testing"
	"time"
)

func TestSuite_CountsAndRenders(t *testing.T) {
	s := &Suite{Name: "upgrade"}
	s.Add(Case{Class: "schema", Name: "83/01", Time: Duration(1500 * time.Millisecond)})
	s.Add(Case{Class: "schema", Name: "83/02", Failure: &Message{Message: "failed", Text: "fix: repair"}})
	s.Add(Case{Class: "checks", Name: "locale", Skipped: &Message{Message: "not applicable"}})
	if s.Tests != 3 || s.Failures != 1 || s.Skipped != 1 {
		t.Fatalf("counts %d/%d/%d, want 3/1/1", s.Tests, s.Failures, s.Skipped)
	}
	out, err := (&Suites{Suites: []*Suite{s}}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`<?xml version="1.0"`, `<testsuite name="upgrade" tests="3" failures="1" skipped="1">`,
		`<testcase classname="schema" name="83/01" time="1.500"></testcase>`, `<failure message="failed">fix: repair</failure>`, `<skipped message="not applicable"></skipped>`} {
		if !strings.Contains(string(out), want) {
			t.Errorf("missing %s in:\n%s", want, out)
		}
	}
}
