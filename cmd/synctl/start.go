package main

import (
	"context"

	"github.com/spf13/cobra"

	"hsops/internal/proc"
)

func newStartCmd(o *options) *cobra.Command {
	return actionCmd(o, "start", "Start the main process, then the workers, and wait for each to answer /health", runStart)
}

func runStart(ctx context.Context, s *proc.Supervisor, pl proc.Plan) error {
	return s.Start(ctx, pl)
}
