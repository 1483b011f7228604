package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"hsops/internal/cli"
	"hsops/internal/server"
)

type generateOptions struct {
	serverName  string
	reportStats string
}

func (g *generateOptions) flags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVarP(&g.serverName, "server-name", "H", "", "server name of the new config")
	f.StringVar(&g.reportStats, "report-stats", "", "yes or no: the config's report_stats")
}

// newGenerateCmd is Synapse's --generate-config as a command.
func newGenerateCmd() *cobra.Command {
	var configs []string
	var g generateOptions
	cmd := &cobra.Command{
		Use:   "generate-config -c homeserver.yaml --server-name NAME --report-stats yes|no",
		Short: "Write a new SQLite config with fresh secrets, a log config and a signing key (never overwrites)",
		Args:  cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runGenerate(cmd, "generate-config", configs, g)
		},
	}
	cmd.Flags().StringArrayVarP(&configs, "config-path", "c", nil, "where to write the config")
	g.flags(cmd)
	return cmd
}

// runGenerate writes the config; what is the command's name in messages.
func runGenerate(cmd *cobra.Command, what string, configs []string, g generateOptions) error {
	if len(configs) != 1 {
		return cli.Usagef("%s needs exactly one -c path", what)
	}
	if g.serverName == "" {
		return cli.Usagef("%s needs --server-name", what)
	}
	if g.reportStats != "yes" && g.reportStats != "no" {
		return cli.Usagef("%s needs --report-stats=yes or --report-stats=no", what)
	}
	res, err := server.GenerateConfig(configs[0], g.serverName, g.reportStats == "yes")
	if err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "A config file has been generated in %q for server name %q (mode 0600: it holds secrets).\n", res.Config, res.ServerName)
	fmt.Fprintf(cmd.OutOrStdout(), "Start it with: synctl start %s\n", res.Config)
	return nil
}
