package cli

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"hsops/internal/fault"
)

// newTree is a small tool: a root with a -c flag and a `start CONFIG`
// subcommand.
func newTree() *cobra.Command {
	root := &cobra.Command{Use: "tool", Args: NoArgs, RunE: func(*cobra.Command, []string) error { return nil }}
	root.PersistentFlags().StringP("config", "c", "", "the config")
	start := &cobra.Command{Use: "start CONFIG", Args: ExactArgs(1), RunE: func(*cobra.Command, []string) error { return nil }}
	start.Flags().String("release", "", "a release")
	stop := &cobra.Command{Use: "stop", Args: NoArgs, RunE: func(*cobra.Command, []string) error { return nil }}
	root.AddCommand(start, stop)
	return root
}

func words(values ...string) cobra.CompletionFunc {
	return func(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
		return values, cobra.ShellCompDirectiveNoFileComp
	}
}

func TestCheckTree_RequiresCompletionCommand(t *testing.T) {
	got := CheckTree(newTree())
	if len(got) != 1 || !strings.Contains(got[0], "no completion command") {
		t.Fatalf("CheckTree of a root without AddCompletion = %q, want one problem naming the completion command", got)
	}
	root := newTree()
	AddCompletion(root, Completions{})
	if got := CheckTree(root); len(got) != 0 {
		t.Fatalf("CheckTree after AddCompletion = %q, want nothing", got)
	}
}

func TestCheckTree_ReportsCompletionsForMissingFlags(t *testing.T) {
	root := newTree()
	AddCompletion(root, Completions{
		Flags: map[string]cobra.CompletionFunc{"release": words("1.0"), "to-release": words("1.0")},
		Args:  map[string]cobra.CompletionFunc{"start": words("a.yaml"), "restart": words("a.yaml")},
	})
	got := strings.Join(CheckTree(root), "\n")
	for _, want := range []string{"--to-release", `"restart"`} {
		if !strings.Contains(got, want) {
			t.Errorf("CheckTree = %q, want it to name %s", got, want)
		}
	}
	for _, known := range []string{"--release", `"start"`} {
		if strings.Contains(got, known+",") || strings.HasSuffix(got, known) {
			t.Errorf("CheckTree = %q names %s, which the tree has", got, known)
		}
	}
}

// complete runs cobra's hidden __complete command as the shells do and
// returns the values offered (descriptions dropped) and the directive line.
func complete(t *testing.T, root *cobra.Command, args ...string) ([]string, string) {
	t.Helper()
	var out bytes.Buffer
	root.SetArgs(append([]string{cobra.ShellCompRequestCmd}, args...))
	root.SetOut(&out)
	root.SetErr(io.Discard)
	if err := root.Execute(); err != nil {
		t.Fatalf("__complete %q: %v", args, err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	var values []string
	for _, l := range lines[:len(lines)-1] {
		values = append(values, strings.SplitN(l, "\t", 2)[0])
	}
	return values, lines[len(lines)-1]
}

func TestAddCompletion_OffersValues(t *testing.T) {
	root := newTree()
	AddCompletion(root, Completions{
		Flags: map[string]cobra.CompletionFunc{"release": words("1.0", "2.0"), "config": words("a.yaml")},
		Args:  map[string]cobra.CompletionFunc{"start": words("b.yaml")},
	})
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"start", "--release", ""}, "1.0 2.0"},
		{[]string{"start", ""}, "b.yaml"},
		// A persistent flag of the root, on a subcommand.
		{[]string{"stop", "-c", ""}, "a.yaml"},
		// A command without positional arguments offers none (not files).
		{[]string{"stop", ""}, ""},
		{[]string{"completion", ""}, "bash fish zsh"},
	} {
		got, directive := complete(t, root, tc.args...)
		if strings.Join(got, " ") != tc.want {
			t.Errorf("__complete %q offers %q, want %q", tc.args, got, tc.want)
		}
		if directive != ":4" {
			t.Errorf("__complete %q ends with directive %s, want :4 (no files)", tc.args, directive)
		}
	}
}

func TestCompletionCmd_Scripts(t *testing.T) {
	for _, shell := range []string{"bash", "zsh", "fish"} {
		root := newTree()
		AddCompletion(root, Completions{})
		var out bytes.Buffer
		root.SetArgs([]string{"completion", shell})
		root.SetOut(&out)
		if err := root.Execute(); err != nil {
			t.Fatalf("completion %s: %v", shell, err)
		}
		if !strings.Contains(out.String(), "__complete") || !strings.Contains(out.String(), "tool") {
			t.Errorf("completion %s printed no script for tool:\n%s", shell, out.String())
		}
	}
	for _, args := range [][]string{{"completion"}, {"completion", "tcsh"}, {"help", "nope"}} {
		root := newTree()
		Prepare(Tool{Name: "tool"}, root)
		AddCompletion(root, Completions{})
		root.SetArgs(args)
		root.SetOut(io.Discard)
		root.SetErr(io.Discard)
		if err := root.Execute(); fault.ClassOf(err) != fault.Usage {
			t.Errorf("tool %s: error %v, want a usage error", strings.Join(args, " "), err)
		}
	}
}
