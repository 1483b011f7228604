// Package clidoc generates a tool's reference documentation from its cobra
// commands, and is the test that keeps the committed copy current: one
// Markdown page per command under docs/reference (<tool>_<sub>.md, as
// cobra/doc names them) and one man page under docs/man (<tool>-<sub>.1).
// The root's Markdown page ends with the tool's exit table, rendered from
// the tool's own (cli.Tool.Exits).
//
// The output is deterministic: no generation date (DisableAutoGenTag), a
// fixed date in the man pages' header, and the root prepared as cli.Run
// prepares it. Help texts are written for a terminal (wrapped, aligned),
// so they are kept as they are, in a preformatted block.
//
// Each tool's TestDocs calls Test, which runs Check and CheckManual (the
// exit table of the tool's manual, docs/<tool>.md, between its markers);
// with -update (go test ./cmd/... -run TestDocs -update) they rewrite the
// pages and the table, and remove the pages of commands that are gone.
package clidoc

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"

	"hsops/internal/cli"
)

// manDate is the date in the man pages' header. It is fixed so that
// regenerating the pages changes nothing unless a command changed.
var manDate = time.Date(2025, time.January, 1, 0, 0, 0, 0, time.UTC)

// Generate returns the tool's pages, keyed by their path below docs/
// ("reference/synctl_start.md", "man/synctl-start.1"). It prepares root as
// cli.Run does and changes the help texts of its commands: build a root
// for it alone.
func Generate(t cli.Tool, root *cobra.Command) (map[string][]byte, error) {
	cli.Prepare(t, root)
	root.InitDefaultVersionFlag()
	root.InitDefaultHelpCmd()
	pages := map[string][]byte{}
	var cmds []*cobra.Command
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c != root && (!c.IsAvailableCommand() || c.IsAdditionalHelpTopicCommand()) {
			return
		}
		c.DisableAutoGenTag = true
		c.InitDefaultHelpFlag()
		cmds = append(cmds, c)
		for _, s := range c.Commands() {
			walk(s)
		}
	}
	walk(root)
	long := map[*cobra.Command]string{}
	for _, c := range cmds {
		long[c] = strings.TrimSpace(c.Long)
	}

	// Man pages: the help text as --help shows it, exit table included.
	for _, c := range cmds {
		c.Long = preformatted(long[c])
		var b bytes.Buffer
		header := &doc.GenManHeader{Section: "1", Date: &manDate, Source: "hsops", Manual: "hsops Manual"}
		if err := doc.GenMan(c, header, &b); err != nil {
			return nil, fmt.Errorf("man page of %s: %w", c.CommandPath(), err)
		}
		pages["man/"+strings.ReplaceAll(c.CommandPath(), " ", "-")+".1"] = b.Bytes()
	}

	// Markdown: the root's exit table as a table of its own.
	exitHelp := t.ExitHelp()
	for _, c := range cmds {
		text := long[c]
		if c == root {
			text = strings.TrimSpace(strings.TrimSuffix(text, exitHelp))
		}
		c.Long = preformatted(text)
		var b bytes.Buffer
		if err := doc.GenMarkdownCustom(c, &b, func(s string) string { return s }); err != nil {
			return nil, fmt.Errorf("markdown page of %s: %w", c.CommandPath(), err)
		}
		page := b.String()
		if c == root {
			page = withSection(page, "### Exit codes\n\n"+t.ExitMarkdown()+"\n")
		}
		pages["reference/"+strings.ReplaceAll(c.CommandPath(), " ", "_")+".md"] = []byte(page)
	}
	for _, c := range cmds {
		c.Long = long[c]
	}
	return pages, nil
}

// preformatted puts a help text in a fenced block: it is laid out for a
// terminal, and Markdown would reflow it and read <...> and *.yaml as
// markup.
func preformatted(text string) string {
	if text == "" {
		return ""
	}
	return "```\n" + text + "\n```"
}

// withSection inserts a section before the page's SEE ALSO (at its end if
// it has none).
func withSection(page, section string) string {
	if i := strings.Index(page, "### SEE ALSO"); i >= 0 {
		return page[:i] + section + page[i:]
	}
	return page + section
}

// owned reports whether the page at rel (below docs/) is one of the tool's.
func owned(tool, rel string) bool {
	dir, name := filepath.Split(rel)
	switch dir {
	case "reference/":
		return name == tool+".md" || strings.HasPrefix(name, tool+"_") && strings.HasSuffix(name, ".md")
	case "man/":
		return name == tool+".1" || strings.HasPrefix(name, tool+"-") && strings.HasSuffix(name, ".1")
	}
	return false
}

// Check compares the tool's pages with those under dir (the repository's
// docs/) and fails t for every page that differs, is missing, or belongs to
// a command that is gone. With update it writes the pages instead, and
// removes the stale ones.
func Check(t *testing.T, dir string, tool cli.Tool, root *cobra.Command, update bool) {
	t.Helper()
	if update {
		if err := Write(dir, tool, root); err != nil {
			t.Fatal(err)
		}
		return
	}
	problems, err := Diff(dir, tool, root)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Error(p)
	}
}

// Diff returns what differs between the tool's pages under dir and freshly
// generated ones, one line each, naming the command that regenerates them.
func Diff(dir string, tool cli.Tool, root *cobra.Command) ([]string, error) {
	pages, committed, err := pagesAndCommitted(dir, tool, root)
	if err != nil {
		return nil, err
	}
	fix := fmt.Sprintf("regenerate the docs: go test ./cmd/%s -run TestDocs -update", tool.Name)
	var problems []string
	for _, rel := range committed {
		if _, ok := pages[rel]; !ok {
			problems = append(problems, fmt.Sprintf("docs/%s documents a command %s does not have; %s", rel, tool.Name, fix))
		}
	}
	for _, rel := range sortedKeys(pages) {
		got, err := os.ReadFile(filepath.Join(dir, rel))
		switch {
		case os.IsNotExist(err):
			problems = append(problems, fmt.Sprintf("docs/%s is missing; %s", rel, fix))
		case err != nil:
			return nil, err
		case !bytes.Equal(got, pages[rel]):
			problems = append(problems, fmt.Sprintf("docs/%s is out of date (%s); %s", rel, firstDifference(got, pages[rel]), fix))
		}
	}
	return problems, nil
}

// Write writes the tool's pages under dir and removes those of commands
// that are gone.
func Write(dir string, tool cli.Tool, root *cobra.Command) error {
	pages, committed, err := pagesAndCommitted(dir, tool, root)
	if err != nil {
		return err
	}
	for _, rel := range committed {
		if _, ok := pages[rel]; !ok {
			if err := os.Remove(filepath.Join(dir, rel)); err != nil {
				return err
			}
		}
	}
	for _, rel := range sortedKeys(pages) {
		path := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(path, pages[rel], 0o644); err != nil {
			return err
		}
	}
	return nil
}

// pagesAndCommitted generates the tool's pages and lists the tool's pages
// under dir.
func pagesAndCommitted(dir string, tool cli.Tool, root *cobra.Command) (map[string][]byte, []string, error) {
	pages, err := Generate(tool, root)
	if err != nil {
		return nil, nil, err
	}
	var committed []string
	for _, sub := range []string{"reference", "man"} {
		entries, err := os.ReadDir(filepath.Join(dir, sub))
		if err != nil && !os.IsNotExist(err) {
			return nil, nil, err
		}
		for _, e := range entries {
			if rel := sub + "/" + e.Name(); owned(tool.Name, rel) {
				committed = append(committed, rel)
			}
		}
	}
	return pages, committed, nil
}

func sortedKeys(pages map[string][]byte) []string {
	names := make([]string, 0, len(pages))
	for rel := range pages {
		names = append(names, rel)
	}
	sort.Strings(names)
	return names
}

// firstDifference names the first line where the committed page and the
// generated one differ.
func firstDifference(committed, generated []byte) string {
	a := strings.Split(string(committed), "\n")
	b := strings.Split(string(generated), "\n")
	for i := 0; i < len(a) || i < len(b); i++ {
		var x, y string
		if i < len(a) {
			x = a[i]
		}
		if i < len(b) {
			y = b[i]
		}
		if x != y {
			return fmt.Sprintf("line %d is %q, the command says %q", i+1, x, y)
		}
	}
	return "they differ"
}
