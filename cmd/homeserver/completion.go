package main

import (
	"github.com/spf13/cobra"

	"hsops/internal/cli"
	"hsops/internal/complete"
)

// addCompletion registers what the shells complete: -c as a homeserver
// config.
func addCompletion(root *cobra.Command) {
	cli.AddCompletion(root, cli.Completions{
		Flags: map[string]cobra.CompletionFunc{
			"config-path":  complete.Configs,
			"report-stats": complete.Words("yes", "report usage statistics", "no", "do not"),
		},
	})
}
