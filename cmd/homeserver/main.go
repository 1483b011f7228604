// Command homeserver is the hsops homeserver engine: the process that synctl
// starts and stops. It is invoked like Synapse's synapse.app.homeserver and
// synapse.app.generic_worker.
package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"hsops/internal/cli"
	"hsops/internal/config"
	"hsops/internal/db"
	"hsops/internal/proc"
	"hsops/internal/sequences"
	"hsops/internal/server"
	"hsops/schema"
)

// Exit codes, documented in --help and README.
const (
	exitOK       = 0
	exitUsage    = 2
	exitConfig   = 3
	exitDatabase = 4
	exitSchema   = 5
	exitListen   = 6
	exitRunning  = 7
	exitRefused  = 8
	exitInternal = 70
)

const exitCodesHelp = `Exit codes:
  0   stopped cleanly (or: the config was generated)
  2   usage error
  3   configuration error
  4   the database cannot be opened or fails the server checks (version, encoding, locale)
  5   the database's schema cannot be used (too new, not upgraded for a worker, not a homeserver database)
  6   a listener cannot be bound (address in use, permission)
  7   already running (the pid file names a live homeserver)
  8   register-user: the homeserver refused the registration (the user exists, a wrong secret, ...)
  70  internal error`

// daemonEnv tells a re-executed process that it is the daemon child and
// which file descriptor reports its start-up to the parent.
const daemonEnv = "HSOPS_HOMESERVER_DAEMON"

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root := newRootCmd(stdin, stdout, stderr)
	return cli.Run(cli.Tool{Name: "homeserver", UsageCode: exitUsage, InternalCode: exitInternal, Classify: classify}, root, args, stdout, stderr)
}

type options struct {
	configPaths    []string
	daemonize      bool
	generate       bool
	serverName     string
	reportStats    string
	stdout, stderr io.Writer
}

func newRootCmd(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	o := &options{stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:   "homeserver -c homeserver.yaml [-c worker.yaml] [--daemonize]",
		Short: "The hsops homeserver engine (main process or generic worker)",
		Long: `homeserver runs the hsops homeserver engine. With a config whose worker_app is
synapse.app.generic_worker it runs as a worker.

At start-up it loads the config, opens the database, brings its schema up to
date (the main process) or checks that it is (a worker), checks the server
(PostgreSQL version, encoding, locale), binds its listeners, writes its pid
file and starts serving. With --daemonize it detaches, and the command returns
only once the daemon is listening (exit 0) or has failed (the reason, non-zero),
so that synctl knows the truth. It speaks sd_notify when NOTIFY_SOCKET is set.

SIGTERM or SIGINT: stop accepting, finish requests and the current
background-update batch, remove the pid file, exit 0. SIGHUP: reopen the log.

` + exitCodesHelp,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.generate {
				return generateConfig(o)
			}
			return serve(o)
		},
	}
	f := root.Flags()
	f.StringArrayVarP(&o.configPaths, "config-path", "c", nil, "config file or directory (repeatable; later files override earlier ones)")
	f.BoolVarP(&o.daemonize, "daemonize", "D", false, "detach and run in the background")
	f.BoolVar(&o.generate, "generate-config", false, "write a new config to the -c path and exit")
	f.StringVarP(&o.serverName, "server-name", "H", "", "server name for --generate-config")
	f.StringVar(&o.reportStats, "report-stats", "", "yes or no, for --generate-config")
	root.AddCommand(newRegisterCmd(stdout))
	return root
}

func classify(err error) (int, string, bool) {
	var le *schema.LockedError
	switch {
	case errors.Is(err, config.ErrNotFound):
		return exitConfig, "check the -c path; to generate a config: homeserver -c homeserver.yaml --generate-config --server-name <name> --report-stats no", true
	case errors.Is(err, config.ErrInvalid), errors.Is(err, config.ErrNoDatabase):
		return exitConfig, "fix the config named above", true
	case errors.Is(err, db.ErrCannotCreate):
		return exitDatabase, "create that directory, or point database.args.database in the config at a writable place", true
	case errors.Is(err, db.ErrNotFound):
		return exitSchema, "the main process creates the database: start it before the workers", true
	case errors.Is(err, db.ErrUnreachable), errors.Is(err, db.ErrNotDatabase):
		return exitDatabase, "check the database section of the config and that the database server is running", true
	case errors.Is(err, db.ErrServerTooOld), errors.Is(err, db.ErrBadEncoding), errors.Is(err, db.ErrBadLocale):
		return exitDatabase, "PostgreSQL 11+ with a UTF8 database whose collation and ctype are C is required; create one with\n  createdb --encoding=UTF8 --locale=C --template=template0 --owner=<user> <name>", true
	case errors.Is(err, schema.ErrCompatTooNew):
		return exitSchema, "a newer release upgraded this database: run that release, or roll the database back with\n  update_database rollback --database-config <config> --to-release <this version>", true
	case errors.Is(err, schema.ErrWorker):
		return exitSchema, "start (or upgrade with) the main process first, then the workers", true
	case errors.Is(err, schema.ErrNotEngine), errors.Is(err, schema.ErrNotHomeserver), errors.Is(err, schema.ErrTooOld):
		return exitSchema, "point the config at an hsops engine database, or at an empty one", true
	case errors.As(err, &le):
		return exitSchema, "another process is upgrading the schema: wait for it, then start again", true
	case errors.Is(err, sequences.ErrInconsistent):
		return exitSchema, "stop every process using the database and run the SQL given above", true
	case errors.Is(err, server.ErrListen):
		return exitListen, "another process may be using the port: stop it, or change the listener in the config", true
	case errors.Is(err, errRunning):
		return exitRunning, "stop it first (synctl stop), or remove the pid file if that process is not a homeserver", true
	}
	return 0, "", false
}

var errRunning = errors.New("already running")

// processConfig resolves the pid file and log file of this process.
type processConfig struct {
	cfg     *config.Config
	pidFile string
	logFile string
	name    string
}

func loadProcess(paths []string) (*processConfig, error) {
	if len(paths) == 0 {
		return nil, cli.Usagef("a config is required: -c homeserver.yaml")
	}
	cfg, err := config.Load(paths...)
	if err != nil {
		return nil, err
	}
	p := &processConfig{cfg: cfg, pidFile: cfg.PidFile, name: "homeserver"}
	logCfg := cfg.LogConfig
	if cfg.IsWorker() {
		if cfg.WorkerApp != "synapse.app.generic_worker" {
			return nil, fmt.Errorf("%w: worker_app %q is not supported by the engine (use synapse.app.generic_worker)", config.ErrInvalid, cfg.WorkerApp)
		}
		p.pidFile = cfg.WorkerPidFile
		p.name = cfg.WorkerName
		logCfg = cfg.WorkerLogConfig
	}
	p.logFile = logFileFrom(logCfg)
	if p.logFile == "" {
		p.logFile = filepath.Join(cfg.Dir, p.name+".log")
	}
	if p.pidFile != "" {
		if abs, err := filepath.Abs(p.pidFile); err == nil {
			p.pidFile = abs
		}
	}
	return p, nil
}

// logFileFrom reads the file name of the first file handler of a Synapse
// (Python logging) log config; "" when there is none.
func logFileFrom(path string) string {
	if path == "" {
		return ""
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	var lc struct {
		Handlers map[string]struct {
			Filename string `yaml:"filename"`
		} `yaml:"handlers"`
	}
	if yaml.Unmarshal(data, &lc) != nil {
		return ""
	}
	for _, h := range lc.Handlers {
		if h.Filename != "" {
			return h.Filename
		}
	}
	return ""
}

// serve runs the homeserver, as a daemon or in the foreground.
func serve(o *options) error {
	p, err := loadProcess(o.configPaths)
	if err != nil {
		return err
	}
	daemonize := o.daemonize || (p.cfg.IsWorker() && p.cfg.WorkerDaemonize) || (!p.cfg.IsWorker() && p.cfg.Daemonize)
	if p.pidFile != "" {
		if pid, err := proc.ReadPidFile(p.pidFile); err == nil && pid != os.Getpid() && proc.Running(pid) && looksLikeHomeserver(pid) {
			return fmt.Errorf("%w: pid %d (from %s)", errRunning, pid, p.pidFile)
		}
	}
	if fdStr := os.Getenv(daemonEnv); fdStr != "" {
		fd, _ := strconv.Atoi(fdStr)
		return runDaemonChild(p, os.NewFile(uintptr(fd), "ready"))
	}
	if daemonize {
		if p.pidFile == "" {
			return fmt.Errorf("%w: pid_file is required to daemonize", config.ErrInvalid)
		}
		return startDaemon(o, p)
	}
	return runForeground(p, o.stderr)
}

func looksLikeHomeserver(pid int) bool {
	cmd := proc.Cmdline(pid)
	return cmd == "" || strings.Contains(cmd, "homeserver") || strings.Contains(cmd, "synapse") || strings.Contains(cmd, "worker")
}

// startDaemon re-executes this program detached (new session, stdio to the
// log) and waits on a pipe for the child to say it is ready or why it failed.
func startDaemon(o *options, p *processConfig) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	args := []string{}
	for _, c := range o.configPaths {
		args = append(args, "-c", c)
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), daemonEnv+"=3")
	cmd.ExtraFiles = []*os.File{w}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start daemon: %w", err)
	}
	w.Close()
	line, _ := bufio.NewReader(r).ReadString('\n')
	r.Close()
	line = strings.TrimSpace(line)
	switch {
	case line == "READY":
		_ = cmd.Process.Release()
		return nil
	case strings.HasPrefix(line, "ERROR "):
		_ = cmd.Wait()
		code, msg, _ := strings.Cut(strings.TrimPrefix(line, "ERROR "), " ")
		n, _ := strconv.Atoi(code)
		hint := ""
		if h, rest, ok := strings.Cut(msg, "\x1fhint: "); ok {
			msg, hint = h, strings.ReplaceAll(rest, "\x1f", "\n")
		}
		return cli.Fail(n, errors.New(msg), hint)
	}
	err = cmd.Wait()
	return cli.Fail(exitInternal, fmt.Errorf("the homeserver exited during start-up (%v)", err), "see its log: "+p.logFile)
}

// runDaemonChild is the detached process: stdio to the log, then start and
// tell the parent.
func runDaemonChild(p *processConfig, ready *os.File) error {
	log, err := server.OpenLog(p.logFile, p.name)
	if err != nil {
		fmt.Fprintf(ready, "ERROR %d %s\n", exitConfig, err)
		return err
	}
	if f := log.File(); f != nil {
		_ = syscall.Dup2(int(f.Fd()), 1)
		_ = syscall.Dup2(int(f.Fd()), 2)
	}
	devnull, err := os.Open(os.DevNull)
	if err == nil {
		_ = syscall.Dup2(int(devnull.Fd()), 0)
	}
	return runServer(p, log, func(err error) {
		if err == nil {
			fmt.Fprintln(ready, "READY")
		} else {
			code, hint, ok := classify(err)
			if !ok {
				code = exitInternal
			}
			msg := strings.ReplaceAll(err.Error(), "\n", " ")
			if hint != "" {
				msg += "\x1fhint: " + strings.ReplaceAll(hint, "\n", "\x1f")
			}
			fmt.Fprintf(ready, "ERROR %d %s\n", code, msg)
		}
		ready.Close()
	})
}

func runForeground(p *processConfig, stderr io.Writer) error {
	log, err := server.OpenLog(p.logFile, p.name)
	if err != nil {
		return err
	}
	return runServer(p, log, func(err error) {
		if err == nil {
			fmt.Fprintf(stderr, "homeserver: listening; logging to %s\n", p.logFile)
		}
	})
}

// runServer starts the server, reports the start-up outcome, serves until
// SIGTERM/SIGINT, and cleans up. SIGHUP reopens the log.
func runServer(p *processConfig, log *server.Logger, started func(error)) error {
	defer log.Close()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for range hup {
			if err := log.Reopen(); err != nil {
				fmt.Fprintln(os.Stderr, err)
			}
			log.Infof("log reopened (SIGHUP)")
		}
	}()
	srv, err := server.Start(ctx, server.Options{Config: p.cfg, Log: log, Notify: server.SDNotify})
	if err == nil && p.pidFile != "" {
		err = server.WritePidFile(p.pidFile, os.Getpid())
	}
	if err != nil {
		log.Errorf("start-up failed: %v", err)
		started(err)
		return err
	}
	if p.pidFile != "" {
		defer server.RemovePidFile(p.pidFile, os.Getpid())
	}
	started(nil)
	return srv.Serve(ctx)
}
