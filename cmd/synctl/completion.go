package main

import (
	"github.com/spf13/cobra"

	"hsops/internal/cli"
	"hsops/internal/complete"
)

// addCompletion registers what the shells complete: the actions (they are
// subcommands), CONFIG and -w as homeserver configs, -a as a directory.
func addCompletion(root *cobra.Command) {
	config := complete.FirstArg(complete.Configs)
	cli.AddCompletion(root, cli.Completions{
		Flags: map[string]cobra.CompletionFunc{
			"worker":        complete.Configs,
			"all-processes": complete.Dirs,
			"homeserver":    complete.Files,
			"python":        complete.Files,
		},
		Args: map[string]cobra.CompletionFunc{"start": config, "stop": config, "restart": config, "status": config},
	})
}
