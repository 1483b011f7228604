package clidoc

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/spf13/cobra"

	"hsops/internal/cli"
	"hsops/internal/scripttest"
)

// Test is each tool's TestDocs, run from cmd/<tool>: docs/reference and
// docs/man as the commands say (Check), the tool's exit table held to the
// rules (cli.Tool.Check), and the exit table of its manual, docs/<tool>.md,
// as the tool's own (CheckManual). newRoot builds the tool's root (each
// check takes its own). With -update the pages and the manual's table are
// rewritten.
func Test(t *testing.T, tool cli.Tool, newRoot func() *cobra.Command) {
	const dir = "../../docs"
	t.Run("reference", func(t *testing.T) {
		Check(t, dir, tool, newRoot(), scripttest.Update())
	})
	t.Run("exits", func(t *testing.T) {
		for _, problem := range tool.Check(newRoot()) {
			t.Error(problem)
		}
		CheckManual(t, dir, tool, scripttest.Update())
	})
}

// The markers around the exit table of a tool's manual page.
const (
	exitsBegin = "<!-- the exit codes: generated from the tool's table by go test ./cmd/%s -run TestDocs -update -->\n"
	exitsEnd   = "<!-- end of the exit codes -->\n"
)

// CheckManual compares the exit table of the tool's manual page
// (docs/<tool>.md under dir, between its markers) with the tool's own, and
// fails t when they differ; with update it writes the tool's table there
// instead.
func CheckManual(t *testing.T, dir string, tool cli.Tool, update bool) {
	t.Helper()
	path := filepath.Join(dir, tool.Name+".md")
	page, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want, err := WithExitTable(page, tool)
	if err != nil {
		t.Fatalf("docs/%s.md: %v", tool.Name, err)
	}
	switch {
	case bytes.Equal(page, want):
	case update:
		if err := os.WriteFile(path, want, 0o644); err != nil {
			t.Fatal(err)
		}
	default:
		t.Errorf("docs/%s.md: the exit table is not the tool's (%s); regenerate it: go test ./cmd/%s -run TestDocs -update",
			tool.Name, firstDifference(page, want), tool.Name)
	}
}

// WithExitTable is a manual page with the tool's exit table (ExitMarkdown)
// between its markers, in place of what is there.
func WithExitTable(page []byte, tool cli.Tool) ([]byte, error) {
	begin := []byte(fmt.Sprintf(exitsBegin, tool.Name))
	i := bytes.Index(page, begin)
	if i < 0 {
		return nil, fmt.Errorf("no exit table: put the line %q where it goes, and %q after it", begin, exitsEnd)
	}
	start := i + len(begin)
	n := bytes.Index(page[start:], []byte(exitsEnd))
	if n < 0 {
		return nil, fmt.Errorf("the exit table does not end: put the line %q after it", exitsEnd)
	}
	var out bytes.Buffer
	out.Write(page[:start])
	out.WriteString(tool.ExitMarkdown())
	out.Write(page[start+n:])
	return out.Bytes(), nil
}
