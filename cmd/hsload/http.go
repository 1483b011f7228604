package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"hsops/internal/cli"
	"hsops/internal/load"
)

func newHTTPCmd(ctx context.Context, stdout io.Writer) *cobra.Command {
	var (
		p       load.Params
		configs []string
		asJSON  bool
	)
	cmd := &cobra.Command{
		Use:   "http (--url URL --shared-secret S | --config homeserver.yaml) [--users N --rooms M --messages K --concurrency C]",
		Short: "Drive a running homeserver through its client API and report requests/s and latency percentiles",
		Long: `http registers N users (shared-secret registration), has them create M public
rooms and join them (--members per room), then sends K messages from
--concurrency clients at once, reads the rooms back through /messages
(--reads pages) and searches them (--searches), timing every request. It
prints, per kind of request, the count, errors, requests/s and the 50th, 90th
and 99th percentile and maximum latency. Any failed request makes the run
fail.

--config reads the URL (the first HTTP listener) and the shared secret from
the homeserver's configuration.`,
		Args: cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := fromConfig(configs, &p.URL, &p.SharedSecret); err != nil {
				return err
			}
			switch {
			case p.SharedSecret == "":
				return cli.Usagef("--shared-secret (or --config with registration_shared_secret) is required")
			case p.Users < 1 || p.Rooms < 1 || p.Messages < 0 || p.Concurrency < 1:
				return cli.Usagef("--users, --rooms and --concurrency must be at least 1")
			}
			rep, err := load.Run(ctx, p)
			if rep != nil {
				if asJSON {
					cli.NewJSONLines(stdout).Emit(rep)
				} else {
					printLoad(stdout, rep)
				}
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&p.URL, "url", "", "the homeserver's client API base URL, e.g. http://127.0.0.1:8008")
	f.StringVar(&p.SharedSecret, "shared-secret", "", "registration_shared_secret of the homeserver")
	f.StringArrayVarP(&configs, "config", "c", nil, "homeserver config to read --url and --shared-secret from")
	f.IntVar(&p.Users, "users", 50, "users to register")
	f.IntVar(&p.Rooms, "rooms", 10, "rooms to create")
	f.IntVar(&p.Members, "members", 10, "members per room (at most --users)")
	f.IntVar(&p.Messages, "messages", 5000, "messages to send, spread over the rooms")
	f.IntVar(&p.Reads, "reads", 500, "/messages pages to read")
	f.IntVar(&p.Searches, "searches", 100, "/search requests")
	f.IntVar(&p.Concurrency, "concurrency", 16, "clients sending at once")
	f.StringVar(&p.Prefix, "prefix", "", "user name prefix (default: load + random)")
	f.BoolVar(&asJSON, "json", false, "print the report as JSON")
	return cmd
}

func printLoad(w io.Writer, r *load.Report) {
	fmt.Fprintf(w, "hsload http: %d users, %d rooms, %d messages against %s, %d clients at once\n", r.Users, r.Rooms, r.Messages, r.URL, r.Concurrency)
	fmt.Fprintf(w, "%-10s %9s %7s %9s %9s %9s %9s %9s\n", "request", "count", "errors", "req/s", "p50", "p90", "p99", "max")
	for _, p := range r.Phases {
		fmt.Fprintf(w, "%-10s %9d %7d %9.1f %7.1fms %7.1fms %7.1fms %7.1fms\n", p.Name, p.Requests, p.Errors, p.PerSec, p.P50ms, p.P90ms, p.P99ms, p.MaxMs)
	}
	if r.FirstError != "" {
		fmt.Fprintf(w, "first error: %s\n", r.FirstError)
	}
}
