package cli

import (
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// unknownCompletions is the root annotation where AddCompletion records the
// flags and commands it was given values for but did not find; CheckTree
// reports them (a renamed flag must not silently lose its completion).
const unknownCompletions = "hsops.cli.completion.unknown"

// Completions are the values a tool's shell completion offers (package
// complete has the shared ones).
type Completions struct {
	// Flags maps a flag name to its values, on every command that has a
	// flag of that name. Each must be a flag of the tool (see CheckTree).
	Flags map[string]cobra.CompletionFunc
	// Shared is Flags for values shared by the tools: a flag of that name
	// completes the same way in every tool that has it, and the tools
	// without one pass it over.
	Shared map[string]cobra.CompletionFunc
	// Args maps a command's path below the root ("start", "background
	// start-job") to the values of its positional arguments.
	Args map[string]cobra.CompletionFunc
}

// AddCompletion gives root the `completion bash|zsh|fish` command (in place
// of cobra's default, whose usage errors are untyped) and registers the
// values of comp. A command that takes no positional argument offers none
// (cobra would offer files).
func AddCompletion(root *cobra.Command, comp Completions) {
	root.AddCommand(newCompletionCmd(root))
	found := map[string]bool{}
	done := map[*pflag.Flag]bool{}
	var walk func(c *cobra.Command, path string)
	walk = func(c *cobra.Command, path string) {
		register := func(f *pflag.Flag) {
			fn, ok := comp.Flags[f.Name]
			if !ok {
				fn, ok = comp.Shared[f.Name]
			}
			if !ok || done[f] {
				return
			}
			done[f], found["--"+f.Name] = true, true
			// The flag is c's own: the lookup cannot fail, and each flag
			// is registered once.
			_ = c.RegisterFlagCompletionFunc(f.Name, fn)
		}
		c.PersistentFlags().VisitAll(register)
		c.LocalNonPersistentFlags().VisitAll(register)
		if fn, ok := comp.Args[path]; ok {
			c.ValidArgsFunction, found[path] = fn, true
		}
		if c.ValidArgsFunction == nil && len(c.ValidArgs) == 0 && c.Args != nil && c.Args(c, []string{"x"}) != nil {
			c.ValidArgsFunction = cobra.NoFileCompletions
		}
		for _, s := range c.Commands() {
			walk(s, strings.TrimSpace(path+" "+s.Name()))
		}
	}
	walk(root, "")
	var unknown []string
	for name := range comp.Flags {
		if !found["--"+name] {
			unknown = append(unknown, "--"+name)
		}
	}
	for path := range comp.Args {
		if !found[path] {
			unknown = append(unknown, fmt.Sprintf("%q", path))
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		if root.Annotations == nil {
			root.Annotations = map[string]string{}
		}
		root.Annotations[unknownCompletions] = strings.Join(unknown, ", ")
	}
}

// newCompletionCmd is the completion command of root's tool.
func newCompletionCmd(root *cobra.Command) *cobra.Command {
	name := root.Name()
	var noDesc bool
	cmd := &cobra.Command{
		Use:   "completion bash|zsh|fish",
		Short: "Print the shell completion script (bash, zsh or fish)",
		Long: fmt.Sprintf(`completion prints the script that makes the shell complete %[1]s's commands,
flags and their values. Install it once:

  bash: %[1]s completion bash > /etc/bash_completion.d/%[1]s
        (needs the bash-completion package; for one user instead:
        echo 'source <(%[1]s completion bash)' >> ~/.bashrc)
  zsh:  %[1]s completion zsh > "${fpath[1]}/_%[1]s"
        (compinit must be enabled: autoload -U compinit; compinit)
  fish: %[1]s completion fish > ~/.config/fish/completions/%[1]s.fish

then start a new shell.`, name),
		Args: NoArgs,
		RunE: func(*cobra.Command, []string) error {
			return Usagef("name a shell: bash, zsh or fish")
		},
	}
	cmd.PersistentFlags().BoolVar(&noDesc, "no-descriptions", false, "offer the values without their descriptions")
	shells := []struct {
		name string
		gen  func(io.Writer) error
	}{
		{"bash", func(w io.Writer) error { return root.GenBashCompletionV2(w, !noDesc) }},
		{"zsh", func(w io.Writer) error {
			if noDesc {
				return root.GenZshCompletionNoDesc(w)
			}
			return root.GenZshCompletion(w)
		}},
		{"fish", func(w io.Writer) error { return root.GenFishCompletion(w, !noDesc) }},
	}
	for _, sh := range shells {
		cmd.AddCommand(&cobra.Command{
			Use:               sh.name,
			Short:             fmt.Sprintf("Print the %s completion script", sh.name),
			Args:              NoArgs,
			ValidArgsFunction: cobra.NoFileCompletions,
			RunE:              func(c *cobra.Command, _ []string) error { return sh.gen(c.OutOrStdout()) },
		})
	}
	return cmd
}

// newHelpCmd is `help [command]` as cobra's, but an unknown topic is a
// usage error (cobra prints the root's help and exits 0).
func newHelpCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "help [command]",
		Short: "Help about any command",
		Args:  cobra.ArbitraryArgs,
		ValidArgsFunction: func(c *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
			cmd, rest, err := c.Root().Find(args)
			if err != nil || len(rest) > 0 {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			var out []cobra.Completion
			for _, s := range cmd.Commands() {
				if s.IsAvailableCommand() && strings.HasPrefix(s.Name(), toComplete) {
					out = append(out, cobra.CompletionWithDesc(s.Name(), s.Short))
				}
			}
			return out, cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(c *cobra.Command, args []string) error {
			cmd, rest, err := c.Root().Find(args)
			if err != nil || len(rest) > 0 {
				return Usagef("unknown help topic %q for %q", strings.Join(args, " "), c.Root().Name())
			}
			cmd.InitDefaultHelpFlag()
			cmd.InitDefaultVersionFlag()
			return cmd.Help()
		},
	}
}
