package main

import (
	"io"
	"os"
	"strings"
	"testing"
)

// TestExitTable holds the exit table to the rules (one code per class, the
// same in every tool) and the table of docs/update_database.md to the tool's own.
func TestExitTable(t *testing.T) {
	for _, problem := range tool.Check(newRootCmd(&globals{stdout: io.Discard, stderr: io.Discard})) {
		t.Error(problem)
	}
	readme, err := os.ReadFile("../../docs/update_database.md")
	if err != nil {
		t.Fatal(err)
	}
	if want := tool.ExitMarkdown(); !strings.Contains(string(readme), want) {
		t.Errorf("docs/update_database.md lacks the exit table of update_database; it is:\n%s", want)
	}
}
