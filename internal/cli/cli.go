// Package cli holds what the tools share: running a cobra root, printing an
// error once with its hint, mapping its class to an exit code through the
// tool's exit table, and deciding between terminal, plain and JSON output.
package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/term"

	"hsops/internal/buildinfo"
	"hsops/internal/fault"
)

// Exit is one row of a tool's exit table: a class the tool can end with
// and what it means for this tool. The code is the class's own.
type Exit struct {
	Class   fault.Class
	Meaning string
}

// Tool describes a command for Run.
type Tool struct {
	Name string
	// OK is what exit 0 means for this tool.
	OK string
	// Exits lists the classes the tool can end with, in the order of its
	// exit table.
	Exits []Exit
	// Interrupted says what an interrupted run has committed when the work
	// itself does not say (fault.Interrupt).
	Interrupted string
	// Again says how to go on after an interruption ("run the same command
	// again" when unset).
	Again string
	// Unclassified is the class of errors that carry none (Internal when
	// unset): a tool whose every failure has the same meaning says so.
	Unclassified fault.Class
	// Hint, when set, rewrites every hint before it is printed (for
	// example to name the config the user gave).
	Hint func(string) string
}

// Code returns the exit code of err for the tool (0 for nil).
func (t Tool) Code(err error) int {
	if err == nil {
		return 0
	}
	return t.classOf(err).Code()
}

func (t Tool) classOf(err error) fault.Class {
	c := fault.ClassOf(err)
	if c == fault.Internal && t.Unclassified != fault.Internal {
		return t.Unclassified
	}
	return c
}

// ExitHelp renders the exit table for --help.
func (t Tool) ExitHelp() string {
	var b strings.Builder
	b.WriteString("Exit codes:\n")
	fmt.Fprintf(&b, "  %-3d %s\n", 0, t.OK)
	for _, e := range t.sorted() {
		fmt.Fprintf(&b, "  %-3d %s\n", e.Class.Code(), strings.ReplaceAll(e.Meaning, "\n", "\n      "))
	}
	return strings.TrimRight(b.String(), "\n")
}

// ExitMarkdown renders the exit table as a Markdown table (README, docs).
func (t Tool) ExitMarkdown() string {
	var b strings.Builder
	b.WriteString("| code | meaning |\n|---|---|\n")
	fmt.Fprintf(&b, "| 0 | %s |\n", t.OK)
	for _, e := range t.sorted() {
		fmt.Fprintf(&b, "| %d | %s |\n", e.Class.Code(), strings.ReplaceAll(e.Meaning, "\n", " "))
	}
	return b.String()
}

// sorted is the exit table in the order of its codes.
func (t Tool) sorted() []Exit {
	out := append([]Exit(nil), t.Exits...)
	sort.SliceStable(out, func(i, j int) bool { return out[i].Class.Code() < out[j].Class.Code() })
	return out
}

// Run executes the root command with args and returns the exit code. The
// error, if any, is printed once to stderr as "<tool>: error: ..." with
// "hint:" lines when there is a hint.
func Run(t Tool, root *cobra.Command, args []string, stdout, stderr io.Writer) int {
	Prepare(t, root)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.Execute()
	if err == nil {
		return 0
	}
	// A signal cancels the root's context: whatever error the work then
	// returned (a driver's own "interrupted", a half-read answer) is the
	// interruption.
	if ctx := root.Context(); ctx != nil && ctx.Err() != nil && !fault.IsInterrupted(err) {
		err = fault.InterruptCtx(ctx, err, fault.CommittedOf(err))
	}
	t.Print(stderr, err)
	return t.Code(err)
}

// Prepare sets root up as Run runs it: errors printed once by Run, usage
// errors typed, --version, and a help command whose unknown topics are
// usage errors. The reference docs are generated from a prepared root.
func Prepare(t Tool, root *cobra.Command) {
	root.SilenceUsage = true
	root.SilenceErrors = true
	// The version is worked out only when --version asks for it (it may
	// ask git, see buildinfo); cobra needs a Version to offer the flag.
	root.Version = "(devel)"
	cobra.AddTemplateFunc("buildVersion", buildinfo.Version)
	root.SetVersionTemplate(t.Name + " {{buildVersion}}\n")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return fault.Wrap(fault.Usage, err, "") })
	root.SetHelpCommand(newHelpCmd())
}

// Print writes err as the tool prints every error: one line, then its hint.
func (t Tool) Print(w io.Writer, err error) {
	class := t.classOf(err)
	hint := fault.HintOf(err)
	msg := strings.TrimSpace(err.Error())
	switch class {
	case fault.Interrupted:
		// One line: what is kept, and how to go on; never the raw
		// cancellation of whatever was running.
		again := t.Again
		if again == "" {
			again = "run the same command again"
		}
		committed := fault.CommittedOf(err)
		if committed == "" {
			committed = t.Interrupted
		}
		msg = "interrupted: " + again
		if committed != "" {
			msg = "interrupted: " + committed + ", " + again
		}
		hint = ""
	case fault.Usage:
		if hint == "" {
			hint = "run '" + t.Name + " --help' for usage"
		}
	case fault.Internal:
		if hint == "" {
			hint = "this is unexpected: please report it with the command you ran"
		}
	}
	if t.Hint != nil && hint != "" {
		hint = t.Hint(hint)
	}
	if class == fault.Interrupted {
		fmt.Fprintf(w, "%s: %s\n", t.Name, msg)
	} else {
		fmt.Fprintf(w, "%s: error: %s\n", t.Name, msg)
	}
	if hint != "" {
		for _, line := range strings.Split(hint, "\n") {
			fmt.Fprintf(w, "hint: %s\n", line)
		}
	}
}

// NoArgs is cobra.NoArgs with a usage error: for a command with
// subcommands, an argument is an unknown subcommand.
func NoArgs(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	if cmd.HasSubCommands() {
		return fault.Usagef("unknown command %q for %q", args[0], cmd.CommandPath())
	}
	return fault.Usagef("%q takes no arguments, got %q", cmd.CommandPath(), args[0])
}

// ExactArgs is cobra.ExactArgs with a usage error.
func ExactArgs(n int) cobra.PositionalArgs {
	return RangeArgs(n, n)
}

// RangeArgs is cobra.RangeArgs with a usage error.
func RangeArgs(lo, hi int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < lo || len(args) > hi {
			want := fmt.Sprintf("%d to %d", lo, hi)
			if lo == hi {
				want = fmt.Sprint(lo)
			}
			return fault.Usagef("%q accepts %s argument(s), got %d", cmd.CommandPath(), want, len(args))
		}
		return nil
	}
}

// Usagef builds a usage error.
func Usagef(format string, args ...any) error { return fault.Usagef(format, args...) }

// RequireFlags makes the flags required: a run without them is a usage
// error naming them (cobra's own check returns an untyped error).
func RequireFlags(cmd *cobra.Command, names ...string) {
	prev := cmd.PreRunE
	cmd.PreRunE = func(c *cobra.Command, args []string) error {
		var missing []string
		for _, n := range names {
			if !c.Flags().Changed(n) {
				missing = append(missing, "--"+n)
			}
		}
		if len(missing) > 0 {
			return fault.Usagef("required flag(s) %s not set", strings.Join(missing, ", "))
		}
		if prev != nil {
			return prev(c, args)
		}
		return nil
	}
}

// CheckTree reports what would make a usage error of the tree untyped (an
// unclassified error, exit 70, instead of the usage exit): a command whose
// positional arguments cobra would check (Args unset) or whose Args check
// fails with an untyped error, flags marked required the cobra way, a root
// without AddCompletion's completion command (cobra would add its own),
// and values registered for a flag no command has. Tests of each tool call
// it on their root; the help command cli.Run installs is typed by
// construction.
func CheckTree(root *cobra.Command) []string {
	var bad []string
	if !hasCompletion(root) {
		bad = append(bad, root.CommandPath()+": no completion command (call cli.AddCompletion in newRootCmd: cobra's default one has untyped usage errors)")
	}
	if unknown := root.Annotations[unknownCompletions]; unknown != "" {
		bad = append(bad, root.CommandPath()+": completion values for flags or commands it does not have: "+unknown)
	}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		switch {
		case c.Args == nil && c.Runnable():
			bad = append(bad, c.CommandPath()+": Args is not set")
		case c.Args != nil:
			// None, too many, or an unknown subcommand: every refusal
			// must be a usage error.
			for _, args := range [][]string{nil, strings.Fields("x x x x x x x x x x x x x x x x")} {
				if err := c.Args(c, args); err != nil && fault.ClassOf(err) != fault.Usage {
					bad = append(bad, fmt.Sprintf("%s: its Args check returns an untyped error (%v): use cli.NoArgs, cli.ExactArgs or cli.RangeArgs", c.CommandPath(), err))
					break
				}
			}
		}
		c.Flags().VisitAll(func(f *pflag.Flag) {
			if _, ok := f.Annotations[cobra.BashCompOneRequiredFlag]; ok {
				bad = append(bad, c.CommandPath()+": --"+f.Name+" marked required the cobra way (use cli.RequireFlags)")
			}
		})
		for _, s := range c.Commands() {
			if s.Name() == "help" {
				continue
			}
			walk(s)
		}
	}
	walk(root)
	return bad
}

// hasCompletion reports whether root has the completion command of
// AddCompletion.
func hasCompletion(root *cobra.Command) bool {
	for _, c := range root.Commands() {
		if c.Name() == "completion" {
			return true
		}
	}
	return root.CompletionOptions.DisableDefaultCmd
}

// IsTerminal reports whether f (a writer for colour and progress bars, or
// a reader for prompts) is a terminal.
func IsTerminal(f any) bool {
	file, ok := f.(*os.File)
	return ok && term.IsTerminal(int(file.Fd()))
}

// JSONLines writes one JSON object per call.
type JSONLines struct {
	enc *json.Encoder
}

// NewJSONLines returns a writer of JSON lines to w.
func NewJSONLines(w io.Writer) *JSONLines { return &JSONLines{enc: json.NewEncoder(w)} }

// Emit writes v as one line.
func (j *JSONLines) Emit(v any) { _ = j.enc.Encode(v) }

// Check reports what is wrong with a tool's exit table and command tree:
// two classes with one code (but for the pairs that share one on purpose),
// and commands that cobra would check the untyped way (see CheckTree).
// Each tool's tests call it.
func (t Tool) Check(root *cobra.Command) []string {
	bad := CheckTree(root)
	seen := map[int]fault.Class{}
	for _, e := range t.Exits {
		code := e.Class.Code()
		if prev, ok := seen[code]; ok && !fault.SharesCode(prev, e.Class) {
			bad = append(bad, fmt.Sprintf("exit %d means both %s and %s", code, prev, e.Class))
		}
		seen[code] = e.Class
	}
	return bad
}

// ConfigHint returns a Tool.Hint that names the config given on the
// command line where a hint says <config> (else fallback): the values cobra
// parsed for the flags named (long names, e.g. "config-path"), on root or
// any of its subcommands, space-joined when repeated. Reading what cobra
// parsed, rather than the arguments again, it sees every form a flag takes
// (-c FILE, -cFILE, -c=FILE, --config-path FILE, --config-path=FILE).
func ConfigHint(root *cobra.Command, fallback string, flags ...string) func(string) string {
	return func(h string) string {
		if !strings.Contains(h, "<config>") {
			return h
		}
		name := fallback
		if paths := changedValues(root, flags); len(paths) > 0 {
			name = strings.Join(paths, " ")
		}
		return strings.ReplaceAll(h, "<config>", name)
	}
}

// changedValues are the values given to the flags named, in the order of
// the names, on cmd or its subcommands (only the command that ran has
// parsed flags; an inherited persistent flag is one flag for all).
func changedValues(cmd *cobra.Command, names []string) []string {
	seen := map[*pflag.Flag]bool{}
	var out []string
	var walk func(c *cobra.Command, name string)
	walk = func(c *cobra.Command, name string) {
		for _, f := range []*pflag.Flag{c.Flags().Lookup(name), c.PersistentFlags().Lookup(name)} {
			if f == nil || !f.Changed || seen[f] {
				continue
			}
			seen[f] = true
			if sv, ok := f.Value.(pflag.SliceValue); ok {
				out = append(out, sv.GetSlice()...)
			} else {
				out = append(out, f.Value.String())
			}
		}
		for _, sub := range c.Commands() {
			walk(sub, name)
		}
	}
	for _, name := range names {
		walk(cmd, name)
	}
	return out
}
