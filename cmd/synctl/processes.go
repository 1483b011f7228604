package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"hsops/internal/cli"
	"hsops/internal/config"
	"hsops/internal/fault"
)

// process is one homeserver process synctl controls.
type process struct {
	App          string
	Configs      []string
	PidFile      string
	CacheFactor  *float64
	CacheFactors map[string]float64
	// HealthURL is the /health URL of its first HTTP listener ("" if none).
	HealthURL string
	// BaseURL is that listener's base URL (for status).
	BaseURL string
	Main    bool
}

// Name renders the process as Synapse's synctl does: app(config,...).
func (p process) Name() string {
	return p.App + "(" + strings.Join(p.Configs, ",") + ")"
}

// plan is the set of processes an action applies to, in start order.
type plan struct {
	main    *process
	workers []process
}

func (pl plan) startOrder() []process {
	var out []process
	if pl.main != nil {
		out = append(out, *pl.main)
	}
	return append(out, pl.workers...)
}

func (pl plan) stopOrder() []process {
	out := append([]process{}, pl.workers...)
	if pl.main != nil {
		out = append(out, *pl.main)
	}
	return out
}

func configErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errConfig, fmt.Sprintf(format, args...))
}

// discover reads the configs as Synapse's synctl does.
func discover(o *options, configPath string) (plan, error) {
	if o.worker != "" && o.allDir != "" {
		return plan{}, cli.Usagef(`cannot use "--worker" with "--all-processes"`)
	}
	if o.noDaemonize && o.allDir != "" {
		return plan{}, cli.Usagef(`cannot use "--no-daemonize" with "--all-processes"`)
	}
	if _, err := os.Stat(configPath); err != nil {
		return plan{}, fault.Errorf(fault.Config, fmt.Sprintf("to generate a config file, run:\n    homeserver -c %s --generate-config --server-name=<server name> --report-stats=<yes/no>", configPath),
			"config file %s does not exist", configPath)
	}
	mainCfg, err := config.Load(configPath)
	if err != nil {
		return plan{}, err
	}
	mainProc := func(pidFile string, cf *float64, cfs map[string]float64) (*process, error) {
		if pidFile == "" {
			return nil, configErr("pid_file is missing from %s", configPath)
		}
		p := &process{App: config.MainProcessApp, Configs: []string{configPath}, PidFile: absPath(pidFile), CacheFactor: cf, CacheFactors: cfs, Main: true}
		p.BaseURL = config.BaseURL(mainCfg.Listeners)
		if p.BaseURL != "" {
			p.HealthURL = p.BaseURL + "/health"
		}
		return p, nil
	}
	var files []string
	switch {
	case o.worker != "":
		if st, err := os.Stat(o.worker); err != nil || st.IsDir() {
			return plan{}, fault.Errorf(fault.Config, "", "no worker config found at %q", o.worker)
		}
		files = []string{o.worker}
	case o.allDir != "":
		if st, err := os.Stat(o.allDir); err != nil || !st.IsDir() {
			return plan{}, fault.Errorf(fault.Config, "", "no worker config directory found at %q", o.allDir)
		}
		matches, _ := filepath.Glob(filepath.Join(o.allDir, "*.yaml"))
		sort.Strings(matches)
		files = matches
	default:
		m, err := mainProc(mainCfg.PidFile, mainCfg.SynctlCacheFactor, mainCfg.SynctlCacheFactors)
		if err != nil {
			return plan{}, err
		}
		return plan{main: m}, nil
	}
	var pl plan
	for _, f := range files {
		wc, err := config.Load(f)
		if err != nil {
			return plan{}, err
		}
		if wc.WorkerApp == "" {
			return plan{}, configErr("worker_app is missing from %s", f)
		}
		if wc.WorkerApp == config.MainProcessApp {
			for _, k := range wc.Keys() {
				if strings.HasPrefix(k, "worker_") && k != "worker_app" {
					return plan{}, configErr("%s: the main process cannot use worker_* config (%s)", f, k)
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
			m, err := mainProc(pid, cf, cfs)
			if err != nil {
				return plan{}, err
			}
			pl.main = m
			continue
		}
		if wc.WorkerPidFile == "" {
			return plan{}, configErr("worker_pid_file is missing from %s", f)
		}
		merged, err := config.Load(configPath, f)
		if err != nil {
			return plan{}, err
		}
		p := process{App: wc.WorkerApp, Configs: []string{configPath, f}, PidFile: absPath(wc.WorkerPidFile),
			CacheFactor: wc.SynctlCacheFactor, CacheFactors: wc.SynctlCacheFactors}
		p.BaseURL = config.BaseURL(merged.WorkerListeners)
		if p.BaseURL != "" {
			p.HealthURL = p.BaseURL + "/health"
		}
		pl.workers = append(pl.workers, p)
	}
	return pl, nil
}

func absPath(p string) string {
	if abs, err := filepath.Abs(p); err == nil {
		return abs
	}
	return p
}

// cacheEnv is the environment a process is started with: synctl's own,
// plus SYNAPSE_CACHE_FACTOR[_<NAME>] from its synctl_cache_factor(s).
func cacheEnv(p process, out *printer) []string {
	env := os.Environ()
	if p.CacheFactor != nil && *p.CacheFactor != 0 {
		out.say("", "Setting 'synctl_cache_factor' in the config is deprecated. Instead, please do\none of the following:\n - Either set the environment variable 'SYNAPSE_CACHE_FACTOR'\n - or set 'caches.global_factor' in the homeserver config.\n--------------------------------------------------------------------------------")
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
