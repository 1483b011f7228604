package main

import (
	"github.com/spf13/cobra"

	"hsops/internal/cli"
	"hsops/internal/complete"
)

// addCompletion registers what the shells complete: -c as a homeserver
// config, releases from the release facts, schema versions from the
// engine's schema, the on-demand jobs.
func addCompletion(root *cobra.Command) {
	cli.AddCompletion(root, cli.Completions{
		Flags: map[string]cobra.CompletionFunc{
			"database-config": complete.Configs,
			"to-version":      complete.SchemaVersions,
			"to-schema":       complete.SchemaVersions,
			"to-release":      complete.Releases,
			"to":              complete.Releases,
			"from":            complete.Releases,
			"workers":         complete.Dirs,
			"junit":           complete.Files,
			"python":          complete.Files,
			"scratch-dir":     complete.Dirs,
		},
		Args: map[string]cobra.CompletionFunc{
			"background start-job": complete.FirstArg(complete.Jobs),
			"background enabled":   complete.FirstArg(complete.Words("on", "run background updates", "off", "pause them")),
		},
	})
}
