package main

import (
	"context"

	"github.com/spf13/cobra"

	"hsops/internal/proc"
)

func newRestartCmd(o *options) *cobra.Command {
	return actionCmd(o, "restart", "Stop, then start", runRestart)
}

func runRestart(ctx context.Context, s *proc.Supervisor, pl proc.Plan) error {
	return s.Restart(ctx, pl)
}
