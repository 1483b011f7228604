// Package complete holds the values the tools' shell completions offer
// (cli.AddCompletion registers them on flags and arguments): homeserver
// config paths, directories and SQLite databases, which the shell lists
// itself, filtered as cobra's directives tell it; the Synapse releases of
// the release facts; and the engine's schema versions.
//
// Every function is a cobra.CompletionFunc. Lists are offered newest
// first, in that order, each value with a description (the shells show
// it beside the value; `completion --no-descriptions` drops it), and only
// the values that start with what was typed.
package complete

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"hsops/internal/releases"
	"hsops/schema/engine"
)

// Configs offers homeserver configs: *.yaml and *.yml files, and
// directories (a config may be a directory of *.yaml files, and the shell
// goes on into one).
func Configs(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
	return []cobra.Completion{"yaml", "yml"}, cobra.ShellCompDirectiveFilterFileExt
}

// Dirs offers directories.
func Dirs(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
	return nil, cobra.ShellCompDirectiveFilterDirs
}

// Files offers every file (an SQLite database, a binary: any name will
// do).
func Files(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
	return nil, cobra.ShellCompDirectiveDefault
}

// FirstArg offers f's values for the first positional argument and nothing
// after it.
func FirstArg(f cobra.CompletionFunc) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return f(cmd, args, toComplete)
	}
}

// Words offers fixed values, each with its description, in their order.
func Words(valueDesc ...string) cobra.CompletionFunc {
	return func(_ *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		var out []cobra.Completion
		for i := 0; i+1 < len(valueDesc); i += 2 {
			if strings.HasPrefix(valueDesc[i], toComplete) {
				out = append(out, cobra.CompletionWithDesc(valueDesc[i], valueDesc[i+1]))
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveKeepOrder
	}
}

// Releases offers the Synapse releases of the release facts, newest first,
// each with its schema and compat versions ("1.98.0", or "v1.98.0" once a
// v is typed: both are accepted). Release candidates are left out.
func Releases(_ *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	prefix := ""
	if strings.HasPrefix(toComplete, "v") {
		prefix = "v"
	}
	all := releases.All()
	var out []cobra.Completion
	for i := len(all) - 1; i >= 0; i-- {
		r := all[i]
		if r.RC {
			continue
		}
		v := prefix + r.Version.String()
		if !strings.HasPrefix(v, toComplete) {
			continue
		}
		desc := fmt.Sprintf("schema %d", r.Schema)
		if r.Compat != 0 {
			desc += fmt.Sprintf(", compat %d", r.Compat)
		}
		if r.Date != "" {
			desc += ", released " + r.Date
		}
		out = append(out, cobra.CompletionWithDesc(v, desc))
	}
	return out, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveKeepOrder
}

// SchemaVersions offers the engine's schema versions, newest first, each
// with the Synapse releases at that version.
func SchemaVersions(_ *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	s := engine.Schema()
	var out []cobra.Completion
	for v := s.Version; v >= s.Oldest; v-- {
		n := strconv.Itoa(v)
		if !strings.HasPrefix(n, toComplete) {
			continue
		}
		var at []releases.SchemaFact
		for _, f := range releases.SchemaFacts() {
			if f.Schema == v {
				at = append(at, f)
			}
		}
		desc := "no Synapse release"
		if len(at) > 0 {
			desc = "Synapse " + releases.Series(at)
		}
		out = append(out, cobra.CompletionWithDesc(n, desc))
	}
	return out, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveKeepOrder
}

// Jobs offers the on-demand background jobs of the engine.
func Jobs(_ *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	var out []cobra.Completion
	for _, j := range engine.Schema().Updates.Jobs() {
		if strings.HasPrefix(j, toComplete) {
			out = append(out, j)
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}
