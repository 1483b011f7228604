package main

import (
	"github.com/spf13/cobra"

	"hsops/internal/cli"
	"hsops/internal/complete"
)

// addCompletion registers what the shells complete: -c as a homeserver
// config, --schema-version from the engine's schema.
func addCompletion(root *cobra.Command) {
	cli.AddCompletion(root, cli.Completions{
		Flags: map[string]cobra.CompletionFunc{
			"database-config": complete.Configs,
			"config":          complete.Configs,
			"schema-version":  complete.SchemaVersions,
			"work":            complete.Dirs,
			"port-db":         complete.Files,
		},
	})
}
