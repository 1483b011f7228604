package main

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"hsops/internal/cli"
	"hsops/internal/proc"
)

func newStatusCmd(o *options) *cobra.Command {
	return &cobra.Command{
		Use:   "status [CONFIG]",
		Short: "Show each process: pid, state, uptime, health, version (exit 22 unless all are up)",
		Args:  cli.RangeArgs(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pl, err := o.plan(args)
			if err != nil {
				return err
			}
			all := o.supervisor(newPrinter(o.stdout, o.stderr)).Status(cmd.Context(), pl)
			if o.json {
				enc := json.NewEncoder(o.stdout)
				for _, st := range all {
					_ = enc.Encode(st)
				}
			} else if err := statusTable(o.stdout, all); err != nil {
				return err
			}
			// The exit code answers "is everything up?" for scripts.
			return proc.AllUp(all)
		},
	}
}

func statusTable(w io.Writer, all []proc.ProcessStatus) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PROCESS\tPID\tSTATE\tUPTIME\tHEALTH\tVERSION")
	for _, st := range all {
		pid, up, ver := "-", "-", "-"
		if st.Pid != 0 {
			pid = fmt.Sprint(st.Pid)
		}
		if st.State == "running" {
			up = (time.Duration(st.Uptime) * time.Second).String()
		}
		if st.Version != "" {
			ver = st.Version
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", st.Process, pid, st.State, up, st.Health, ver)
	}
	return tw.Flush()
}
