package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	"hsops/internal/cli"
	"hsops/internal/cutover"
	"hsops/internal/proc"
)

// runSwitch is port_db --switch-config: the whole move to PostgreSQL, the
// homeserver stopped only for the final port.
func runSwitch(ctx context.Context, o *options) error {
	python := o.python
	if python == "" {
		python = os.Getenv("SYNCTL_PYTHON")
	}
	jl := cli.NewJSONLines(o.stdout)
	res, err := cutover.Run(ctx, cutover.Options{
		SQLitePath: o.sqlitePath, PostgresConfig: o.pgConfig, Config: o.switchConfig, AllDir: o.allDir,
		Launcher: proc.Launcher{Python: python, Homeserver: o.homeserver},
		Timeout:  o.timeout, BatchSize: o.batchSize, Jobs: o.jobs, DryRun: o.dryRun, Verify: o.switchVerify,
		Progress: func(ev cutover.Event) {
			if o.json {
				if ev.Type != "port" || o.verbose {
					jl.Emit(ev)
				}
				return
			}
			printSwitchEvent(o, ev)
		},
	})
	if res != nil {
		if o.json {
			jl.Emit(map[string]any{"event": "summary", "result": res})
		} else {
			printSwitchSummary(o, res, err == nil)
		}
	}
	return err
}

func printSwitchEvent(o *options, ev cutover.Event) {
	w := o.stdout
	switch ev.Type {
	case "phase":
		fmt.Fprintf(w, "== %s\n", ev.Phase)
	case "check", "pass", "process":
		fmt.Fprintf(w, "   %s\n", ev.Message)
	case "port":
		if ev.Port.Type == "state" && o.verbose {
			fmt.Fprintf(w, "   %s...\n", ev.Port.State)
		}
		if ev.Port.Type == "warning" || ev.Port.Type == "note" {
			table := ""
			if ev.Port.Table != "" {
				table = ev.Port.Table + ": "
			}
			fmt.Fprintf(o.stderr, "%s: %s%s\n", ev.Port.Type, table, ev.Port.Message)
		}
	case "rollback":
		fmt.Fprintf(w, "== failed at %s, rolling back: %s\n", ev.Phase, ev.Message)
	}
}

func printSwitchSummary(o *options, res *cutover.Result, ok bool) {
	w := o.stdout
	if res.DryRun {
		if len(res.Plan) > 0 {
			fmt.Fprintln(w, "\nplan:")
			for i, p := range res.Plan {
				fmt.Fprintf(w, "  %d. %s\n", i+1, p)
			}
		}
		if res.NewSection != "" {
			fmt.Fprintf(w, "\nthe database section of %s becomes:\n%s", res.File, indent(res.NewSection))
		}
		fmt.Fprintln(w, "\nnothing was changed (--dry-run)")
		return
	}
	if !ok {
		return
	}
	var phases []string
	for _, p := range res.Phases {
		phases = append(phases, fmt.Sprintf("%s %.2fs", p.Name, float64(p.Millis)/1000))
	}
	fmt.Fprintf(w, "\nphases: %s\n", strings.Join(phases, ", "))
	if res.Resumed {
		fmt.Fprintf(w, "the config already named the complete port: the homeserver was started on PostgreSQL\n")
		return
	}
	fmt.Fprintf(w, "final port (homeserver stopped): %d rows\n", res.FinalRows)
	fmt.Fprintf(w, "downtime: %.2fs (from the stop to every process healthy)\n", res.Downtime.Seconds())
	fmt.Fprintf(w, "the homeserver serves from %s; the SQLite config is kept as %s\n", res.Target, res.Backup)
}

func indent(s string) string {
	lines := strings.SplitAfter(s, "\n")
	for i, l := range lines {
		if l != "" {
			lines[i] = "    " + l
		}
	}
	return strings.Join(lines, "")
}
