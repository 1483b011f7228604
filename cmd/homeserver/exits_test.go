package main

import (
	"io"
	"os"
	"strings"
	"testing"
)

// TestExitTable holds the exit table to the rules (one code per class, the
// same in every tool) and README's table to the tool's own.
func TestExitTable(t *testing.T) {
	for _, problem := range tool.Check(newRootCmd(nil, io.Discard, io.Discard)) {
		t.Error(problem)
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if want := tool.ExitMarkdown(); !strings.Contains(string(readme), want) {
		t.Errorf("README.md lacks the exit table of homeserver; it is:\n%s", want)
	}
}
