package proc

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"hsops/internal/config"
	"hsops/internal/fault"
)

// ErrConfig is a deployment the configs do not describe completely (a
// missing pid_file, worker_app or worker_pid_file, worker keys in the main
// process's file).
var ErrConfig = fault.New(fault.Config, "configuration error", "")

func configErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, args...))
}

// Process is one homeserver process of a deployment.
type Process struct {
	// App is the Synapse app module: synapse.app.homeserver for the main
	// process, the worker_app of a worker.
	App string
	// Configs are the config paths it is started with (-c each), as given.
	Configs []string
	// PidFile is its pid file, absolute.
	PidFile string
	// CacheFactor and CacheFactors are its synctl_cache_factor(s).
	CacheFactor  *float64
	CacheFactors map[string]float64
	// BaseURL is the base URL of its first HTTP listener ("" if none), and
	// HealthURL that listener's /health.
	BaseURL   string
	HealthURL string
	// Main is true for the main process.
	Main bool
}

// Name renders the process as Synapse's synctl does: app(config,...).
func (p Process) Name() string {
	return p.App + "(" + strings.Join(p.Configs, ",") + ")"
}

// Target is what HomeserverRunning checks for this process: its pid file
// and configs (not the database's open files: a supervisor asks about its
// process, not about who else reads the database).
func (p Process) Target() Target {
	t := Target{Configs: p.Configs, PidFile: p.PidFile}
	if !p.Main {
		t.Synctl = "-w " + p.Configs[1] + " " + p.Configs[0]
	}
	return t
}

// Env is the environment the process is started with: base plus
// SYNAPSE_CACHE_FACTOR[_<NAME>] from its synctl_cache_factor(s).
func (p Process) Env(base []string) []string {
	env := append([]string{}, base...)
	if p.CacheFactor != nil && *p.CacheFactor != 0 {
		env = append(env, "SYNAPSE_CACHE_FACTOR="+strconv.FormatFloat(*p.CacheFactor, 'f', -1, 64))
	}
	names := make([]string, 0, len(p.CacheFactors))
	for n := range p.CacheFactors {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		env = append(env, "SYNAPSE_CACHE_FACTOR_"+strings.ToUpper(n)+"="+strconv.FormatFloat(p.CacheFactors[n], 'f', -1, 64))
	}
	return env
}

// DeprecatedCacheFactor reports whether the process uses
// synctl_cache_factor, which Synapse deprecates.
func (p Process) DeprecatedCacheFactor() bool {
	return p.CacheFactor != nil && *p.CacheFactor != 0
}

func (p *Process) setURLs(ls []config.Listener) {
	p.BaseURL = config.BaseURL(ls)
	if p.BaseURL != "" {
		p.HealthURL = p.BaseURL + "/health"
	}
}

// Plan is the set of processes an action applies to.
type Plan struct {
	Main    *Process
	Workers []Process
}

// StartOrder is the main process, then the workers.
func (pl Plan) StartOrder() []Process {
	var out []Process
	if pl.Main != nil {
		out = append(out, *pl.Main)
	}
	return append(out, pl.Workers...)
}

// StopOrder is the workers, then the main process.
func (pl Plan) StopOrder() []Process {
	out := append([]Process{}, pl.Workers...)
	if pl.Main != nil {
		out = append(out, *pl.Main)
	}
	return out
}

// Selection says which processes of a deployment to act on, as synctl's
// arguments do.
type Selection struct {
	// Config is the main config (a file or a directory of *.yaml).
	Config string
	// Worker, when set, is the one worker config to act on.
	Worker string
	// AllDir, when set, is a directory of worker configs to act on (one of
	// them may be the main process: worker_app: synapse.app.homeserver).
	AllDir string
}

// Discover reads the configs as Synapse's synctl does and returns the
// processes selected. Worker and AllDir exclude each other (AllDir wins).
func Discover(sel Selection) (Plan, error) {
	if _, err := os.Stat(sel.Config); err != nil {
		return Plan{}, fault.Errorf(fault.Config, fmt.Sprintf("to generate a config file, run:\n    homeserver -c %s --generate-config --server-name=<server name> --report-stats=<yes/no>", sel.Config),
			"config file %s does not exist", sel.Config)
	}
	mainCfg, err := config.Load(sel.Config)
	if err != nil {
		return Plan{}, err
	}
	files, err := workerFiles(sel)
	if err != nil {
		return Plan{}, err
	}
	if files == nil {
		m, err := mainProcess(sel.Config, mainCfg, mainCfg.PidFile, mainCfg.SynctlCacheFactor, mainCfg.SynctlCacheFactors)
		if err != nil {
			return Plan{}, err
		}
		return Plan{Main: m}, nil
	}
	var pl Plan
	for _, f := range files {
		wc, err := config.Load(f)
		if err != nil {
			return Plan{}, err
		}
		if wc.WorkerApp == config.MainProcessApp {
			if pl.Main, err = mainFromWorkerFile(sel.Config, mainCfg, f, wc); err != nil {
				return Plan{}, err
			}
			continue
		}
		w, err := worker(sel.Config, f, wc)
		if err != nil {
			return Plan{}, err
		}
		pl.Workers = append(pl.Workers, w)
	}
	return pl, nil
}

// workerFiles lists the worker configs selected (nil: the main process
// only).
func workerFiles(sel Selection) ([]string, error) {
	switch {
	case sel.Worker != "" && sel.AllDir == "":
		if st, err := os.Stat(sel.Worker); err != nil || st.IsDir() {
			return nil, fault.Errorf(fault.Config, "", "no worker config found at %q", sel.Worker)
		}
		return []string{sel.Worker}, nil
	case sel.AllDir != "":
		if st, err := os.Stat(sel.AllDir); err != nil || !st.IsDir() {
			return nil, fault.Errorf(fault.Config, "", "no worker config directory found at %q", sel.AllDir)
		}
		matches, _ := filepath.Glob(filepath.Join(sel.AllDir, "*.yaml"))
		sort.Strings(matches)
		if matches == nil {
			matches = []string{}
		}
		return matches, nil
	}
	return nil, nil
}

func mainProcess(configPath string, mainCfg *config.Config, pidFile string, cf *float64, cfs map[string]float64) (*Process, error) {
	if pidFile == "" {
		return nil, configErr("pid_file is missing from %s", configPath)
	}
	p := &Process{App: config.MainProcessApp, Configs: []string{configPath}, PidFile: absPath(pidFile), CacheFactor: cf, CacheFactors: cfs, Main: true}
	p.setURLs(mainCfg.Listeners)
	return p, nil
}

// mainFromWorkerFile is the main process named in a worker directory: its
// pid file and cache factors default to the main config's.
func mainFromWorkerFile(configPath string, mainCfg *config.Config, f string, wc *config.Config) (*Process, error) {
	for _, k := range wc.Keys() {
		if strings.HasPrefix(k, "worker_") && k != "worker_app" {
			return nil, configErr("%s: the main process cannot use worker_* config (%s)", f, k)
		}
	}
	pid := wc.PidFile
	if pid == "" {
		pid = mainCfg.PidFile
	}
	cf, cfs := wc.SynctlCacheFactor, wc.SynctlCacheFactors
	if cf == nil {
		cf = mainCfg.SynctlCacheFactor
	}
	if cfs == nil {
		cfs = mainCfg.SynctlCacheFactors
	}
	return mainProcess(configPath, mainCfg, pid, cf, cfs)
}

func worker(configPath, f string, wc *config.Config) (Process, error) {
	if wc.WorkerApp == "" {
		return Process{}, configErr("worker_app is missing from %s", f)
	}
	if wc.WorkerPidFile == "" {
		return Process{}, configErr("worker_pid_file is missing from %s", f)
	}
	merged, err := config.Load(configPath, f)
	if err != nil {
		return Process{}, err
	}
	p := Process{App: wc.WorkerApp, Configs: []string{configPath, f}, PidFile: absPath(wc.WorkerPidFile),
		CacheFactor: wc.SynctlCacheFactor, CacheFactors: wc.SynctlCacheFactors}
	p.setURLs(merged.WorkerListeners)
	return p, nil
}
