package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"hsops/internal/cli"
	"hsops/internal/load"
	"hsops/internal/pgcluster"
)

func newBenchPortCmd(ctx context.Context, stdout, stderr io.Writer) *cobra.Command {
	o := load.BenchPortOptions{Stderr: stderr}
	var portDB string
	cmd := &cobra.Command{
		Use:   "bench-port [--events 1000000] [--postgres-url URL] [--work DIR]",
		Short: "Measure port_db on a generated database against a raw COPY of the same rows",
		Long: `bench-port generates (or reuses, in --work) an engine SQLite database with the
given number of messages and everything that goes with them, ports it with the
port_db binary (next to hsload, or on PATH) into a new PostgreSQL database,
recording time, peak memory and where the time went. Then, in the same run,
the very same rows are loaded twice more:

  raw COPY   into a new database with the same, fully indexed schema, by COPY
             FROM STDIN, table after table on one connection: the reference;
  the floor  into bare tables of the same schema by COPY, then the same index
             and constraint builds as port_db, with the same --jobs: the best
             port_db's method could do without reading SQLite.

It reports the ratio of port_db's time to each. On a machine whose load
changes during a run, --rounds 3 measures the three loads three times, port_db
first, then last, then first again, and reports the round of median ratio
with every round's times.

--postgres-url is a role that may create databases; without it a throwaway
cluster is started from the initdb and pg_ctl on the machine.`,
		Args: cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Events < 1 || o.Jobs < 1 || o.BatchSize < 1 || o.Rounds < 1 {
				return cli.Usagef("--events, --jobs, --batch-size and --rounds must be at least 1")
			}
			bin, err := findBinary("port_db", portDB)
			if err != nil {
				return cli.Usagef("port_db not found: build it next to hsload (go build -o bin/ ./cmd/...) or pass --port-db")
			}
			o.PortDB = bin
			if o.AdminURL == "" {
				cluster, err := pgcluster.Start()
				if err != nil {
					return fmt.Errorf("no PostgreSQL: pass --postgres-url or install initdb/pg_ctl: %w", err)
				}
				defer cluster.Stop()
				o.AdminURL = cluster.AdminURL()
			}
			o.Progress = func(line string) { fmt.Fprintln(stdout, line) }
			res, err := load.BenchPort(ctx, o)
			if err != nil {
				return err
			}
			printBenchPort(stdout, res)
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.Events, "events", 1000000, "messages in the generated database")
	f.IntVar(&o.Jobs, "jobs", 2, "port_db --jobs (and the floor's)")
	f.IntVar(&o.BatchSize, "batch-size", 10000, "port_db --batch-size")
	f.IntVar(&o.Rounds, "rounds", 1, "measure the three loads this many times, alternating their order; report the round of median ratio")
	f.StringVar(&o.Work, "work", filepath.Join(os.TempDir(), "hsops-bench-port"), "directory for the generated database (reused across runs)")
	f.StringVar(&o.AdminURL, "postgres-url", os.Getenv(pgcluster.EnvURL), "PostgreSQL admin URL")
	// The rules, not this machine's values (--help, docs).
	f.Lookup("work").DefValue = filepath.Join("$TMPDIR", "hsops-bench-port")
	f.Lookup("postgres-url").DefValue = "$" + pgcluster.EnvURL
	f.StringVar(&portDB, "port-db", "", "the port_db binary (default: next to hsload, then PATH)")
	return cmd
}

func findBinary(name, given string) (string, error) {
	if given != "" {
		return given, nil
	}
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return exec.LookPath(name)
}

func printBenchPort(w io.Writer, r *load.BenchPortResult) {
	fmt.Fprintf(w, "\n%d messages, %d rows, %.0f MB of values (SQLite file %.0f MB)\n", r.Events, r.Rows, float64(r.Bytes)/1e6, r.SQLiteMB)
	if r.RawCopyRows != r.Rows-r.BookkeepingRows {
		fmt.Fprintf(w, "note: the raw COPY loaded %d rows, the port %d\n", r.RawCopyRows, r.Rows)
	}
	fmt.Fprintf(w, "port_db --jobs %d:          %7.1f s  %9.0f rows/s  %6.1f MB/s  peak RSS %.0f MB\n", r.Jobs, r.PortSeconds, r.PortRowsPerS, r.PortMBPerS, r.PeakRSSMB)
	phases := make([]string, len(r.PortPhases))
	for i, p := range r.PortPhases {
		phases[i] = fmt.Sprintf("%s %.1f s", p.Name, float64(p.Millis)/1000)
	}
	fmt.Fprintf(w, "  phases: %s; %d indexes and constraints rebuilt (%.1f s of builds)\n", strings.Join(phases, ", "), r.Rebuilt, float64(r.RebuildMillis)/1000)
	fmt.Fprintf(w, "raw COPY, fully indexed:    %7.1f s  %9.0f rows/s\n", r.RawCopySeconds, float64(r.RawCopyRows)/r.RawCopySeconds)
	fmt.Fprintf(w, "floor (bare COPY + builds): %7.1f s  (copy %.1f s, then builds %.1f s)\n", r.FloorSeconds, r.FloorCopySeconds, r.FloorRebuildSeconds)
	fmt.Fprintf(w, "time ratio port_db / raw COPY: %.2f\n", r.Ratio)
	fmt.Fprintf(w, "time ratio port_db / floor:    %.2f\n", r.FloorRatio)
	if len(r.AllRounds) > 1 {
		fmt.Fprintf(w, "rounds (the one above is the median):\n")
		for i, rr := range r.AllRounds {
			order := "port_db first"
			if !rr.PortFirst {
				order = "port_db last "
			}
			fmt.Fprintf(w, "  %d, %s: port_db %6.1f s, raw COPY %6.1f s, floor %6.1f s, ratio %.2f, floor ratio %.2f, load average %s -> %s\n",
				i+1, order, rr.PortSeconds, rr.RawCopySeconds, rr.FloorSeconds, rr.Ratio, rr.FloorRatio, rr.LoadAvgStart, rr.LoadAvgEnd)
		}
	}
	data, _ := json.Marshal(r)
	fmt.Fprintln(w, string(data))
}
