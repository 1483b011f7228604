package clidoc

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"hsops/internal/cli"
	"hsops/internal/fault"
)

var tool = cli.Tool{Name: "tool", Exits: []cli.Exit{
	{Class: fault.Config, Meaning: "configuration error"},
	{Class: fault.Usage, Meaning: "usage error"},
}}

// newRoot is a small tool whose start flag's help text is help.
func newRoot(help string) *cobra.Command {
	root := &cobra.Command{Use: "tool", Short: "A tool", Long: "tool does things.\n\n" + tool.ExitHelp(), Args: cli.NoArgs, RunE: func(*cobra.Command, []string) error { return nil }}
	start := &cobra.Command{Use: "start", Short: "Start it", Args: cli.NoArgs, RunE: func(*cobra.Command, []string) error { return nil }}
	start.Flags().Bool("now", false, help)
	root.AddCommand(start)
	cli.AddCompletion(root, cli.Completions{})
	return root
}

func diff(t *testing.T, dir, help string) string {
	t.Helper()
	problems, err := Diff(dir, tool, newRoot(help))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(problems, "\n")
}

func TestDiff_FindsWhatRegeneratingWouldChange(t *testing.T) {
	dir := t.TempDir()
	if got := diff(t, dir, "start at once"); !strings.Contains(got, "docs/reference/tool_start.md is missing; regenerate the docs: go test ./cmd/tool -run TestDocs -update") {
		t.Fatalf("Diff of an empty dir = %q, want the start page missing", got)
	}
	if err := Write(dir, tool, newRoot("start at once")); err != nil {
		t.Fatal(err)
	}
	if got := diff(t, dir, "start at once"); got != "" {
		t.Fatalf("Diff right after Write = %q, want nothing (generation is deterministic)", got)
	}

	got := diff(t, dir, "start immediately")
	for _, want := range []string{"docs/reference/tool_start.md is out of date", "docs/man/tool-start.1 is out of date", `the command says "      --now    start immediately"`} {
		if !strings.Contains(got, want) {
			t.Errorf("Diff after a help text changed = %q, want %q", got, want)
		}
	}
	if strings.Contains(got, "tool.md") {
		t.Errorf("Diff names the root page, which did not change: %q", got)
	}

	// A page of a command that is gone is reported, then removed.
	gone := filepath.Join(dir, "reference", "tool_stop.md")
	if err := os.WriteFile(gone, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "reference", "other_stop.md"), []byte("another tool's"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := diff(t, dir, "start at once"); !strings.Contains(got, "docs/reference/tool_stop.md documents a command tool does not have") || strings.Contains(got, "other_stop") {
		t.Errorf("Diff with a stale page = %q, want tool_stop.md named and other_stop.md left alone", got)
	}
	if err := Write(dir, tool, newRoot("start at once")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(gone); !os.IsNotExist(err) {
		t.Errorf("Write left the stale page %s (%v)", gone, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "reference", "other_stop.md")); err != nil {
		t.Errorf("Write removed another tool's page: %v", err)
	}
}

func TestGenerate_ExitTableAndNoDate(t *testing.T) {
	pages, err := Generate(tool, newRoot("start at once"))
	if err != nil {
		t.Fatal(err)
	}
	root := string(pages["reference/tool.md"])
	if !strings.Contains(root, "### Exit codes\n\n"+tool.ExitMarkdown()) {
		t.Errorf("reference/tool.md lacks the exit table:\n%s", root)
	}
	if strings.Count(root, "usage error") != 1 {
		t.Errorf("reference/tool.md has the exit table twice (help text and table):\n%s", root)
	}
	if strings.Contains(root, "Auto generated") {
		t.Errorf("reference/tool.md has a generation date:\n%s", root)
	}
	for _, want := range []string{"reference/tool_completion_bash.md", "man/tool-completion-zsh.1", "man/tool.1"} {
		if _, ok := pages[want]; !ok {
			t.Errorf("no page %s", want)
		}
	}
}

func TestWithExitTable_ReplacesWhatIsBetweenTheMarkers(t *testing.T) {
	page := "# tool\n\nExit codes:\n\n<!-- the exit codes: generated from the tool's table by go test ./cmd/tool -run TestDocs -update -->\n| old |\n<!-- end of the exit codes -->\n\nmore\n"
	got, err := WithExitTable([]byte(page), tool)
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Replace(page, "| old |\n", tool.ExitMarkdown(), 1)
	if string(got) != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	again, err := WithExitTable(got, tool)
	if err != nil || string(again) != want {
		t.Errorf("a second pass changed the page: %v\n%s", err, again)
	}
	for _, bad := range []string{"# tool\n\n| code | meaning |\n", "<!-- the exit codes: generated from the tool's table by go test ./cmd/tool -run TestDocs -update -->\n| old |\n"} {
		if _, err := WithExitTable([]byte(bad), tool); err == nil || !strings.Contains(err.Error(), "<!--") {
			t.Errorf("page %q: err = %v, want one naming the marker to add", bad, err)
		}
	}
}
