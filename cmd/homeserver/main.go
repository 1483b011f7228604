// Command homeserver is the hsops homeserver engine: the process that synctl
// starts and stops. It is invoked like Synapse's synapse.app.homeserver and
// synapse.app.generic_worker.
package main

import (
	"bufio"
	"context"
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
	"hsops/internal/fault"
	"hsops/internal/proc"
	"hsops/internal/server"
)

// tool is the homeserver's exit table.
var tool = cli.Tool{
	Name: "homeserver",
	OK:   "stopped cleanly (or: the config was generated, the user registered)",
	Exits: []cli.Exit{
		{Class: fault.Usage, Meaning: "usage error"},
		{Class: fault.Config, Meaning: "configuration error"},
		{Class: fault.Database, Meaning: "the database cannot be opened or reached"},
		{Class: fault.NotOurs, Meaning: "not a database the engine can serve (a Synapse database, or not a homeserver database)"},
		{Class: fault.Version, Meaning: "refused: versions or server checks (schema too new or too old, not upgraded for a worker,\nPostgreSQL too old, wrong encoding or locale, sequences behind their tables)"},
		{Class: fault.Locked, Meaning: "another process is upgrading the schema"},
		{Class: fault.InUse, Meaning: "already running (the pid file names a live homeserver)"},
		{Class: fault.Listen, Meaning: "a listener cannot be bound (address in use, permission)"},
		{Class: fault.Down, Meaning: "register-user: the homeserver cannot be reached"},
		{Class: fault.Rejected, Meaning: "register-user: the homeserver refused the registration (the user exists, a wrong secret, ...)"},
		{Class: fault.Internal, Meaning: "internal error"},
	},
}

// daemonEnv tells a re-executed process that it is the daemon child and
// which file descriptor reports its start-up to the parent.
const daemonEnv = "HSOPS_HOMESERVER_DAEMON"

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root := newRootCmd(stdin, stdout, stderr)
	t := tool
	t.Hint = func(h string) string { return strings.ReplaceAll(h, "<config>", "the config") }
	return cli.Run(t, root, args, stdout, stderr)
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

` + tool.ExitHelp(),
		Args: cli.NoArgs,
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

var errRunning = fault.New(fault.InUse, "already running",
	"stop it first (synctl stop), or remove the pid file if that process is not a homeserver")

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
		name, msg, _ := strings.Cut(strings.TrimPrefix(line, "ERROR "), " ")
		class, _ := fault.ParseClass(name)
		hint := ""
		if h, rest, ok := strings.Cut(msg, "\x1fhint: "); ok {
			msg, hint = h, strings.ReplaceAll(rest, "\x1f", "\n")
		}
		return fault.New(class, msg, hint)
	}
	err = cmd.Wait()
	return fault.Errorf(fault.Internal, "see its log: "+p.logFile, "the homeserver exited during start-up (%v)", err)
}

// runDaemonChild is the detached process: stdio to the log, then start and
// tell the parent.
func runDaemonChild(p *processConfig, ready *os.File) error {
	log, err := server.OpenLog(p.logFile, p.name)
	if err != nil {
		fmt.Fprintf(ready, "ERROR %s %s\n", fault.ClassOf(err), err)
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
			hint := fault.HintOf(err)
			msg := strings.ReplaceAll(err.Error(), "\n", " ")
			if hint != "" {
				msg += "\x1fhint: " + strings.ReplaceAll(hint, "\n", "\x1f")
			}
			fmt.Fprintf(ready, "ERROR %s %s\n", fault.ClassOf(err), msg)
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
