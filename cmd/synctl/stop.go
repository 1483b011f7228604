package main

import (
	"context"

	"github.com/spf13/cobra"

	"hsops/internal/proc"
)

func newStopCmd(o *options) *cobra.Command {
	return actionCmd(o, "stop", "Stop the workers, then the main process, and wait for each to exit", runStop)
}

func runStop(ctx context.Context, s *proc.Supervisor, pl proc.Plan) error {
	return s.Stop(ctx, pl)
}
