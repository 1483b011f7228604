package main

import (
	"context"
	"io"
	"os"
	"strings"
	"testing"
)

// TestExitTable holds the exit table to the rules (one code per class, the
// same in every tool) and the table of docs/port_db.md to the tool's own.
func TestExitTable(t *testing.T) {
	for _, problem := range tool.Check(newRootCmd(context.Background(), io.Discard, io.Discard)) {
		t.Error(problem)
	}
	readme, err := os.ReadFile("../../docs/port_db.md")
	if err != nil {
		t.Fatal(err)
	}
	if want := tool.ExitMarkdown(); !strings.Contains(string(readme), want) {
		t.Errorf("docs/port_db.md lacks the exit table of port_db; it is:\n%s", want)
	}
}
