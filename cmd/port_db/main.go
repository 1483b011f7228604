// Command port_db moves a homeserver's SQLite database to PostgreSQL in
// repeatable snapshots. It accepts the flags of Synapse's synapse_port_db.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"hsops/internal/cli"
	"hsops/internal/complete"
	"hsops/internal/config"
	"hsops/internal/fault"
	"hsops/internal/porter"
)

// tool is port_db's exit table: 1 to 5 keep the meanings of Synapse's
// synapse_port_db.
var tool = cli.Tool{
	Name: "port_db",
	OK:   "the port finished (or the dry run found nothing wrong)",
	Exits: []cli.Exit{
		{Class: fault.NoSQLite, Meaning: "the SQLite database does not exist"},
		{Class: fault.Usage, Meaning: "usage error, or the database section has no 'name'"},
		{Class: fault.NotPostgres, Meaning: "the --postgres-config database is not psycopg2"},
		{Class: fault.Config, Meaning: "the --postgres-config file is missing, invalid, or has no database section"},
		{Class: fault.PortFailed, Meaning: "the port failed while copying or rebuilding indexes (nothing committed is lost: run it again to continue)"},
		{Class: fault.Database, Meaning: "PostgreSQL cannot be reached, or the SQLite file cannot be opened"},
		{Class: fault.NotOurs, Meaning: "refused: the target holds someone else's data, or the source is not a homeserver database"},
		{Class: fault.Version, Meaning: "refused: versions (a database newer than hsops knows, PostgreSQL too old, wrong encoding or locale)"},
		{Class: fault.Locked, Meaning: "another process writes the target (update_database, another port_db: it is named)"},
		{Class: fault.InUse, Meaning: "the SQLite database is open in another process (--allow-in-use to port anyway)"},
		{Class: fault.Permission, Meaning: "refused: the --postgres-config user may not read the target's tables (they belong to another role);\n--switch-config: the config (or its directory) is not writable, or a process may not be signalled"},
		{Class: fault.Source, Meaning: "the SQLite database was refused (corrupt, auto_vacuum on, pending background updates,\nrowids moved since the last run, older than what was already ported, tables or columns the target schema lacks)"},
		{Class: fault.Target, Meaning: "the PostgreSQL database was refused (a port of a different source, written to by the homeserver\nsince the last port, a schema at another version or not prepared)"},
		{Class: fault.Verify, Meaning: "--verify found differences between the two databases"},
		{Class: fault.Internal, Meaning: "internal error"},
		{Class: fault.Down, Meaning: "--switch-config: not every process is up: a worker failed after the main process served from PostgreSQL,\nor the way back failed to start the homeserver on SQLite again (the message says where things stand)"},
		{Class: fault.RolledBack, Meaning: "--switch-config: the switch failed before the homeserver served from PostgreSQL and was rolled back\n(the old config is back and the homeserver runs on SQLite; the reason is printed)"},
		{Class: fault.Interrupted, Meaning: "interrupted (run the same command again to continue)"},
	},
	Interrupted: "everything committed so far is kept",
}

func main() {
	// The copy makes short-lived values by the million: collecting when the
	// heap has grown fourfold, within a fixed ceiling, costs a fraction of
	// Go's default doubling and keeps the process under 200 MB. GOGC or
	// GOMEMLIMIT in the environment win.
	if os.Getenv("GOGC") == "" && os.Getenv("GOMEMLIMIT") == "" {
		debug.SetGCPercent(300)
		debug.SetMemoryLimit(100 << 20)
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	t := tool
	t.Hint = func(h string) string { return strings.ReplaceAll(h, "<config>", "--postgres-config") }
	root := newRootCmd(ctx, stdout, stderr)
	root.SetContext(ctx)
	return cli.Run(t, root, args, stdout, stderr)
}

type options struct {
	sqlitePath string
	pgConfig   string
	curses     bool
	batchSize  int
	verbose    bool
	jobs       int
	verify     bool
	dryRun     bool
	json       bool
	allowInUse bool
	// --switch-config and what goes with it.
	switchConfig string
	allDir       string
	python       string
	homeserver   string
	timeout      time.Duration
	switchVerify string
	stdout       io.Writer
	stderr       io.Writer
}

func newRootCmd(ctx context.Context, stdout, stderr io.Writer) *cobra.Command {
	o := &options{stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:   "port_db --sqlite-database homeserver.db --postgres-config homeserver-postgres.yaml [flags]",
		Short: "Move a homeserver's SQLite database to PostgreSQL, in repeatable snapshots",
		Long: `port_db copies a homeserver's SQLite database into PostgreSQL. Run it on a copy
of the database taken while the homeserver was stopped, as often as you like
while the homeserver runs again (each run adds only what is new), then stop the
homeserver, run it once more on the live file, switch the config to
PostgreSQL and start. Killing it at any moment and running it again is safe.

--postgres-config is a homeserver config whose database section is psycopg2
(a complete Synapse config loads; only the database section and server_name
are used). An hsops engine database is ported into a schema created for it at
the source's schema version; a Synapse database into a schema Synapse prepared
by the Synapse release at the source's schema version (update_synapse_database
--database-config with this config; the refusal names the release).

It is compatible with Synapse's synapse_port_db: a port begun by either can be
finished by the other (the progress is in port_from_sqlite3).

` + tool.ExitHelp(),
		Args: cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runPort(ctx, o) },
	}
	f := root.Flags()
	f.StringVar(&o.sqlitePath, "sqlite-database", "", "the SQLite database to port (a snapshot, or the stopped homeserver's file)")
	f.StringVar(&o.pgConfig, "postgres-config", "", "a homeserver config whose database section points at PostgreSQL")
	f.BoolVar(&o.curses, "curses", false, "full-screen progress (same as the terminal progress display)")
	f.IntVar(&o.batchSize, "batch-size", 10000, "rows per batch of an append-only table (Synapse's default is 1000; each batch is one transaction)")
	f.BoolVarP(&o.verbose, "verbose", "v", false, "report every batch")
	f.IntVar(&o.jobs, "jobs", min(runtime.NumCPU(), 4), "tables copied and indexes rebuilt at once (each on its own PostgreSQL session)")
	f.Lookup("jobs").DefValue = "min(CPUs, 4)" // the rule, not this machine's number (--help, docs)
	f.BoolVar(&o.verify, "verify", false, "after the copy, compare row counts and content checksums of every table on both sides")
	f.BoolVar(&o.dryRun, "dry-run", false, "check both databases and show what would be copied; write nothing")
	f.BoolVar(&o.json, "json", false, "print progress and the summary as JSON lines")
	f.BoolVar(&o.allowInUse, "allow-in-use", false, "port even though another process has the SQLite file open")
	f.StringVar(&o.switchConfig, "switch-config", "", "switch this homeserver config (a file or a directory, as synctl's) to PostgreSQL: pre-copy, stop, final port, rewrite, start")
	f.StringVarP(&o.allDir, "all-processes", "a", "", "--switch-config: the worker configs directory, as synctl -a (every worker is stopped and started)")
	f.StringVar(&o.python, "python", "", "--switch-config: start real Synapse with this Python, as synctl --python (also SYNCTL_PYTHON)")
	f.StringVar(&o.homeserver, "homeserver", "", "--switch-config: the homeserver binary (default: next to port_db, then PATH)")
	f.StringVar(&o.switchVerify, "switch-verify", "full", "--switch-config: how the final port is verified while the homeserver is down: full (counts and checksums of what it moved), counts (row counts of what it moved) or whole (counts and checksums of every table, as --verify: reads both databases whole)")
	f.DurationVar(&o.timeout, "timeout", 60*time.Second, "--switch-config: how long to wait for each process to stop or to answer /health")
	cli.RequireFlags(root, "sqlite-database", "postgres-config")
	complete.Add(root)
	return root
}

func runPort(ctx context.Context, o *options) error {
	if o.batchSize < 1 || o.jobs < 1 {
		return cli.Usagef("--batch-size and --jobs must be at least 1")
	}
	if o.switchConfig == "" && (o.allDir != "" || o.python != "" || o.homeserver != "") {
		return cli.Usagef("-a, --python and --homeserver go with --switch-config")
	}
	if o.switchConfig != "" && (o.allowInUse || o.verify) {
		return cli.Usagef("--switch-config always verifies its final port, and never ports a file in use")
	}
	if st, err := os.Stat(o.sqlitePath); err != nil || st.IsDir() {
		return fault.Errorf(fault.NoSQLite, "check the path given to --sqlite-database", "the SQLite database %q does not exist", o.sqlitePath)
	}
	cfg, err := config.Load(o.pgConfig)
	if errors.Is(err, config.ErrNoName) {
		return fault.Wrap(fault.Usage, err, "add name: psycopg2 to the database section")
	}
	if err != nil {
		return fault.Wrap(fault.Config, err, "--postgres-config must be a readable homeserver config")
	}
	if !cfg.Has("database") {
		return fault.Errorf(fault.Config, "add a database section with name: psycopg2 and its args", "the configuration file must have a 'database' section")
	}
	if _, ok := cfg.Raw("database.name"); !ok {
		return fault.Errorf(fault.Usage, "add name: psycopg2 to the database section", "malformed database config: no 'name'")
	}
	target := cfg.Databases[0]
	if !target.IsPostgres() {
		return fault.Errorf(fault.NotPostgres, "set database.name to psycopg2 in "+o.pgConfig, "database must use the 'psycopg2' connector")
	}
	if cfg.ServerName == "" {
		// Synapse's porter loads the config as a homeserver does, which
		// requires it; it checks the source's users against it.
		return fault.Errorf(fault.Config, fmt.Sprintf("add server_name: <the homeserver's name, the one the SQLite database was created with> to %s; nothing was changed", o.pgConfig),
			"%s has no server_name: port_db checks that every user in the SQLite database belongs to it, as Synapse's synapse_port_db does", o.pgConfig)
	}
	if o.switchConfig != "" {
		return runSwitch(ctx, o)
	}
	out := newProgress(o)
	res, err := porter.Run(ctx, porter.Options{
		ConfigPath: o.pgConfig,
		SQLitePath: o.sqlitePath, Target: target, ServerName: cfg.ServerName, BatchSize: o.batchSize, Jobs: o.jobs,
		Verify: o.verify, DryRun: o.dryRun, AllowInUse: o.allowInUse, Progress: out.event,
	})
	out.close()
	if res != nil && (err == nil || errors.Is(err, porter.ErrVerify)) {
		printSummary(o, res)
	}
	if res == nil {
		// The checks write nothing.
		return fault.InterruptCtx(ctx, err, "nothing was written")
	}
	return fault.InterruptCtx(ctx, err, out.committed())
}

// printSummary prints the per-table summary and the next steps.
func printSummary(o *options, res *porter.Result) {
	if o.json {
		cli.NewJSONLines(o.stdout).Emit(map[string]any{"event": "summary", "result": res})
		return
	}
	w := o.stdout
	verb := "copied"
	if res.DryRun {
		verb = "would copy"
	}
	fmt.Fprintf(w, "\n%-40s %-18s %12s %12s %9s %12s  %s\n", "table", "strategy", "already", verb, "time", "rows/s", "verify")
	for _, t := range res.Tables {
		rate := "-"
		if t.Millis > 0 && t.Copied > 0 {
			rate = fmt.Sprintf("%.0f", float64(t.Copied)/(float64(t.Millis)/1000))
		}
		v := ""
		if t.Verify != nil {
			v = "ok"
			if !t.Verify.Match {
				v = "DIFFERS: " + t.Verify.Detail
			}
		}
		dur := "-"
		if !res.DryRun {
			dur = fmt.Sprintf("%.2fs", float64(t.Millis)/1000)
		}
		fmt.Fprintf(w, "%-40s %-18s %12d %12d %9s %12s  %s\n", t.Name, t.Strategy, t.Already, t.Copied, dur, rate, v)
		if t.NUL > 0 || t.BadUTF8 > 0 {
			fmt.Fprintf(w, "%-40s %d NUL characters and %d invalid UTF-8 sequences replaced by U+FFFD\n", "", t.NUL, t.BadUTF8)
		}
		if t.Skipped > 0 {
			fmt.Fprintf(w, "%-40s %d rows skipped (their events are missing)\n", "", t.Skipped)
		}
	}
	if res.DryRun {
		total := int64(0)
		for _, t := range res.Tables {
			total += t.Copied
		}
		fmt.Fprintf(w, "\n%s database at schema %d -> %s: %d rows would be copied; nothing was written (--dry-run)\n", res.Mode, res.SchemaVersion, res.Target, total)
		return
	}
	secs := res.Duration.Seconds()
	fmt.Fprintf(w, "\nported %d rows (%.1f MB) in %.2fs: %.0f rows/s, %.1f MB/s\n", res.Rows, float64(res.Bytes)/1e6, secs, float64(res.Rows)/secs, float64(res.Bytes)/1e6/secs)
	if res.Rebuilt > 0 {
		fmt.Fprintf(w, "%d indexes and constraints dropped for the copy were rebuilt (%.1fs of builds, up to %d at once)\n", res.Rebuilt, float64(res.RebuildMillis)/1000, o.jobs)
	}
	if len(res.Phases) > 0 {
		parts := make([]string, len(res.Phases))
		for i, ph := range res.Phases {
			parts[i] = fmt.Sprintf("%s %.2fs", ph.Name, float64(ph.Millis)/1000)
		}
		fmt.Fprintf(w, "time: %s\n", strings.Join(parts, ", "))
	}
	for _, s := range res.Sequences {
		fmt.Fprintf(w, "sequence %s: %d -> %d\n", s.Name, s.From, s.To)
	}
	if res.VerifyFailed {
		fmt.Fprintln(w, "verification found differences (see above)")
		return
	}
	live := filepath.Base(o.sqlitePath)
	fmt.Fprintf(w, "\nnext steps:\n")
	fmt.Fprintf(w, "  - if %s is a snapshot: stop the homeserver, then port the live database once more (only new rows move):\n", live)
	fmt.Fprintf(w, "      port_db --sqlite-database <live homeserver.db> --postgres-config %s\n", o.pgConfig)
	fmt.Fprintf(w, "  - switch the homeserver's database section to the one in %s\n", o.pgConfig)
	fmt.Fprintf(w, "  - start it: synctl start <config>\n")
}
