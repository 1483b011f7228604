package server

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"gopkg.in/yaml.v3"

	"hsops/internal/config"
	"hsops/internal/fault"
	"hsops/internal/proc"
	"hsops/internal/writable"
)

// Process is the homeserver process a config describes: the main process,
// or a worker when the config sets worker_app.
type Process struct {
	Config *config.Config
	// Configs are the config paths as given (-c each).
	Configs []string
	// PidFile is its pid file, absolute ("" when it has none).
	PidFile string
	// LogFile is where it logs, absolute: the first file handler of its
	// log config, else <name>.log in the working directory (relative
	// paths, see config.ResolvePaths).
	LogFile string
	// Name is "homeserver" or the worker's name.
	Name string
}

// LoadProcess loads the configs of a homeserver process.
func LoadProcess(paths []string) (*Process, error) {
	if len(paths) == 0 {
		return nil, fault.Usagef("a config is required: -c homeserver.yaml")
	}
	cfg, err := config.Load(paths...)
	if err != nil {
		return nil, err
	}
	p := &Process{Config: cfg, Configs: paths, PidFile: cfg.PidFile, Name: "homeserver"}
	logCfg := cfg.LogConfig
	if cfg.IsWorker() {
		if cfg.WorkerApp != "synapse.app.generic_worker" {
			return nil, fmt.Errorf("%w: worker_app %q is not supported by the engine (use synapse.app.generic_worker)", config.ErrInvalid, cfg.WorkerApp)
		}
		p.PidFile = cfg.WorkerPidFile
		p.Name = cfg.WorkerName
		logCfg = cfg.WorkerLogConfig
	}
	wd, err := os.Getwd()
	if err != nil {
		return nil, err
	}
	p.LogFile = config.Abs(wd, logFileFrom(logCfg))
	if p.LogFile == "" {
		p.LogFile = filepath.Join(wd, p.Name+".log")
	}
	p.PidFile = config.Abs(wd, p.PidFile)
	return p, nil
}

// logFileFrom reads the file name of the first file handler of a Synapse
// (Python logging) log config; "" when there is none. Python's logging
// resolves a relative name against the working directory, as LoadProcess
// does.
func logFileFrom(path string) string {
	if path == "" {
		return ""
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	// The handlers in the order the file lists them: "first" must mean
	// the same on every run.
	var lc struct {
		Handlers yaml.Node `yaml:"handlers"`
	}
	if yaml.Unmarshal(data, &lc) != nil || lc.Handlers.Kind != yaml.MappingNode {
		return ""
	}
	for i := 1; i < len(lc.Handlers.Content); i += 2 {
		var h struct {
			Filename string `yaml:"filename"`
		}
		if lc.Handlers.Content[i].Decode(&h) == nil && h.Filename != "" {
			return h.Filename
		}
	}
	return ""
}

// Daemonize reports whether the process detaches: --daemonize, or the
// config's daemonize (worker_daemonize for a worker).
func (p *Process) Daemonize(flag bool) bool {
	if p.Config.IsWorker() {
		return flag || p.Config.WorkerDaemonize
	}
	return flag || p.Config.Daemonize
}

// Run runs the homeserver process until ctx is cancelled (SIGTERM,
// SIGINT): it refuses to start while the homeserver of its pid file runs,
// then, detached (daemonize) or in the foreground, starts the server,
// writes the pid file and serves. A detaching run returns once the daemon
// is ready (nil) or has failed (its error). ready is called in the
// foreground once the server listens.
func (p *Process) Run(ctx context.Context, daemonize bool, ready func(logFile string)) error {
	if err := p.refuseIfRunning(); err != nil {
		return err
	}
	if r, ok := proc.DaemonChild(); ok {
		return p.runDaemonChild(ctx, r)
	}
	if err := p.checkFiles(); err != nil {
		return err
	}
	if daemonize {
		if p.PidFile == "" {
			return fmt.Errorf("%w: pid_file is required to daemonize", config.ErrInvalid)
		}
		var args []string
		for _, c := range p.Configs {
			args = append(args, "-c", c)
		}
		return proc.Daemonize(ctx, args, p.LogFile)
	}
	log, err := OpenLog(p.LogFile, p.Name)
	if err != nil {
		return err
	}
	return p.serve(ctx, log, func(err error) {
		if err == nil && ready != nil {
			ready(p.LogFile)
		}
	})
}

// checkFiles refuses to start when the process could not write its log
// file or its pid file, before anything else is done.
func (p *Process) checkFiles() error {
	if err := writable.File(p.LogFile, "log file"); err != nil {
		return err
	}
	if p.PidFile != "" {
		if err := writable.Dir(filepath.Dir(p.PidFile), fmt.Sprintf("pid file %q", p.PidFile), "the pid file is written there"); err != nil {
			return err
		}
	}
	return nil
}

// refuseIfRunning refuses to start a second homeserver on the pid file,
// and to take over the pid file of another homeserver process.
func (p *Process) refuseIfRunning() error {
	if p.PidFile == "" {
		return nil
	}
	t := proc.Target{Configs: p.Configs, PidFile: p.PidFile}
	if len(p.Configs) == 2 && p.Config.IsWorker() {
		t.Synctl = "-w " + p.Configs[1] + " " + p.Configs[0]
	}
	v := proc.HomeserverRunning(t)
	if err := v.Conflict(); err != nil {
		return err
	}
	if ref := v.Refusal(""); ref != nil {
		return fault.Wrap(fault.InUse, fmt.Errorf("already running: %s (from pid_file %q)", v.Holders[0], p.PidFile), fault.HintOf(ref))
	}
	return nil
}

// runDaemonChild is the detached process: stdio to the log, then start and
// tell the parent.
func (p *Process) runDaemonChild(ctx context.Context, r *proc.Ready) error {
	log, err := OpenLog(p.LogFile, p.Name)
	if err != nil {
		r.Report(err)
		return err
	}
	proc.Detach(log.File())
	return p.serve(ctx, log, r.Report)
}

// serve starts the server, reports the start-up outcome, serves until ctx
// is cancelled, and cleans up. SIGHUP reopens the log.
func (p *Process) serve(ctx context.Context, log *Logger, started func(error)) error {
	defer log.Close()
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
	srv, err := Start(ctx, Options{Config: p.Config, Log: log, Notify: SDNotify})
	if err == nil && p.PidFile != "" {
		err = proc.WritePidFile(p.PidFile, os.Getpid())
	}
	if err != nil {
		log.Errorf("start-up failed: %v", err)
		started(err)
		return err
	}
	if p.PidFile != "" {
		defer proc.RemovePidFile(p.PidFile, os.Getpid())
	}
	started(nil)
	return srv.Serve(ctx)
}
