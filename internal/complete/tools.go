package complete

import (
	"github.com/spf13/cobra"

	"hsops/internal/cli"
)

// flags are the values of the tools' flags, by name: a flag completes the
// same way in every tool that has it.
var flags = map[string]cobra.CompletionFunc{
	// Homeserver configs.
	"config":          Configs,
	"config-path":     Configs,
	"database-config": Configs,
	"postgres-config": Configs,
	"switch-config":   Configs,
	"worker":          Configs,
	// Directories.
	"all-processes": Dirs,
	"scratch-dir":   Dirs,
	"work":          Dirs,
	"workers":       Dirs,
	// Files: databases, binaries, reports.
	"homeserver":      Files,
	"junit":           Files,
	"port-db":         Files,
	"python":          Files,
	"source":          Files,
	"sqlite-database": Files,
	"update-database": Files,
	// Releases and schema versions.
	"from":           Releases,
	"to":             Releases,
	"to-release":     Releases,
	"schema-version": SchemaVersions,
	"to-schema":      SchemaVersions,
	"to-version":     SchemaVersions,
	// Words.
	"report-stats": Words("yes", "report usage statistics", "no", "do not"),
}

// args are the values of commands' positional arguments, by tool and
// command path.
var args = map[string]map[string]cobra.CompletionFunc{
	// synctl's actions are subcommands, each with a config.
	"synctl": {
		"start":   FirstArg(Configs),
		"stop":    FirstArg(Configs),
		"restart": FirstArg(Configs),
		"status":  FirstArg(Configs),
	},
	"update_database": {
		"background start-job": FirstArg(Jobs),
		"background enabled":   FirstArg(Words("on", "run background updates", "off", "pause them")),
	},
}

// Add gives a tool's root its completion command and registers what the
// shells complete: its flags' values (from the table every tool shares)
// and its commands' arguments.
func Add(root *cobra.Command) {
	cli.AddCompletion(root, cli.Completions{Shared: flags, Args: args[root.Name()]})
}
