package main

import (
	"github.com/spf13/cobra"

	"hsops/internal/cli"
	"hsops/internal/complete"
)

// addCompletion registers what the shells complete: --sqlite-database as a
// file, --postgres-config as a homeserver config.
func addCompletion(root *cobra.Command) {
	cli.AddCompletion(root, cli.Completions{
		Flags: map[string]cobra.CompletionFunc{
			"sqlite-database": complete.Files,
			"postgres-config": complete.Configs,
		},
	})
}
