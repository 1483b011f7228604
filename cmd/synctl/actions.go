package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"hsops/internal/cli"
	"hsops/internal/fault"
	"hsops/internal/proc"
)

func runAction(ctx context.Context, o *options, action, configPath string) error {
	switch action {
	case "start", "stop", "restart", "status":
	default:
		return cli.Usagef("unknown action %q: want start, stop, restart or status", action)
	}
	pl, err := discover(o, configPath)
	if err != nil {
		return err
	}
	switch action {
	case "start":
		return startAll(ctx, o, pl)
	case "stop":
		return stopAll(ctx, o, pl)
	case "restart":
		if err := stopAll(ctx, o, pl); err != nil {
			return err
		}
		return startAll(ctx, o, pl)
	}
	return status(ctx, o, pl)
}

// looksOurs says whether a command line can be a homeserver process.
func looksOurs(cmdline string) bool {
	return strings.Contains(cmdline, "homeserver") || strings.Contains(cmdline, "synapse") || strings.Contains(cmdline, "python")
}

// owner says whose the process a pid file names is: gone, another program,
// this process, or another homeserver process (started with other configs:
// a pid file shared by two processes, or copied from another one).
func owner(p process, pid int) proc.Owner {
	o := proc.PidFileOwner(pid, p.PidFile, looksOurs)
	if o != proc.Ours {
		return o
	}
	// Without readable configs the process is taken on the old evidence.
	if args, ok := proc.ConfigArgs(pid); ok && !proc.SameFiles(args, p.Configs) {
		return proc.Other
	}
	return o
}

// errOther reports a pid file naming another homeserver process.
func errOther(p process, pid int) error {
	return configErr("the pid file %s of %s names pid %d, another homeserver process (%s): give each process its own pid file",
		p.PidFile, p.Name(), pid, proc.Cmdline(pid))
}

// running reports whether the process of a pid file is alive and ours; a
// pid file naming another homeserver process is an error.
func running(p process) (int, bool, error) {
	pid, err := proc.ReadPidFile(p.PidFile)
	if err != nil {
		return 0, false, nil
	}
	switch owner(p, pid) {
	case proc.Ours:
		return pid, true, nil
	case proc.Other:
		return pid, false, errOther(p, pid)
	}
	return pid, false, nil
}

func startAll(ctx context.Context, o *options, pl plan) error {
	var failed []string
	var unhealthy error
	for _, p := range pl.startOrder() {
		if err := start(ctx, o, p); err != nil {
			if errors.Is(err, errUnhealthy) {
				unhealthy = err
				continue
			}
			if !errors.Is(err, errStart) {
				return err
			}
			failed = append(failed, p.App)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("%w: %s", errStart, strings.Join(failed, ", "))
	}
	return unhealthy
}

// launcher returns the command that starts a process.
func launcher(o *options, p process) (*exec.Cmd, error) {
	var args []string
	for _, c := range p.Configs {
		args = append(args, "-c", c)
	}
	if !o.noDaemonize {
		args = append(args, "--daemonize")
	}
	if o.python != "" {
		return exec.Command(o.python, append([]string{"-m", p.App}, args...)...), nil
	}
	bin := o.homeserver
	if bin == "" {
		if exe, err := os.Executable(); err == nil {
			candidate := filepath.Join(filepath.Dir(exe), "homeserver")
			if st, err := os.Stat(candidate); err == nil && !st.IsDir() {
				bin = candidate
			}
		}
	}
	if bin == "" {
		found, err := exec.LookPath("homeserver")
		if err != nil {
			return nil, fault.Errorf(fault.Config, "install it, pass --homeserver PATH, or start real Synapse with --python PATH", "cannot find the homeserver binary next to synctl or on PATH")
		}
		bin = found
	}
	return exec.Command(bin, args...), nil
}

func start(ctx context.Context, o *options, p process) error {
	pid, ok, err := running(p)
	if err != nil {
		return err
	}
	if ok {
		o.out.say("", "%s already running (pid %d)", p.App, pid)
		return nil
	}
	cmd, err := launcher(o, p)
	if err != nil {
		return err
	}
	cmd.Env = cacheEnv(p, o.out)
	t0 := time.Now()
	if o.noDaemonize {
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, o.out.stdout, o.out.stderr
		o.out.say(green, "starting %s in the foreground", p.Name())
		if err := cmd.Run(); err != nil {
			o.out.complain("%s exited: %v", p.Name(), err)
			return fmt.Errorf("%w: %s", errStart, p.App)
		}
		return nil
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		code := -1
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		}
		o.out.complain("%s failed to start (exit code: %d). Check the Synapse logfile, or run synctl with --no-daemonize.", p.Name(), code)
		if s := strings.TrimSpace(out.String()); s != "" {
			o.out.complain("%s", indent(s))
		}
		if code == -1 {
			o.out.complain("    %v", err)
		}
		return fmt.Errorf("%w: %s", errStart, p.App)
	}
	if o.noWait || p.HealthURL == "" {
		note := ""
		if p.HealthURL == "" {
			note = " (no HTTP listener to check)"
		}
		o.out.say(green, "started %s%s", p.Name(), note)
		return nil
	}
	if err := waitHealthy(ctx, p.HealthURL, o.timeout); err != nil {
		pid, _ := proc.ReadPidFile(p.PidFile)
		o.out.complain("%s started (pid %d) but did not answer %s within %s: %v", p.Name(), pid, p.HealthURL, o.timeout, err)
		return fmt.Errorf("%w: %s", errUnhealthy, p.App)
	}
	o.out.say(green, "started %s in %.2fs (healthy: %s)", p.Name(), time.Since(t0).Seconds(), p.HealthURL)
	return nil
}

// waitHealthy polls a /health URL until it answers 200 OK.
func waitHealthy(ctx context.Context, url string, timeout time.Duration) error {
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(timeout)
	var last error
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := client.Do(req)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 64))
			resp.Body.Close()
			if resp.StatusCode == 200 && strings.TrimSpace(string(body)) == "OK" {
				return nil
			}
			err = fmt.Errorf("status %s", resp.Status)
		}
		last = err
		if time.Now().After(deadline) {
			return last
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(25 * time.Millisecond):
		}
	}
}

type stopping struct {
	p   process
	pid int
}

func stopAll(ctx context.Context, o *options, pl plan) (err error) {
	// A pid file naming another homeserver process is reported at the end,
	// after the other processes were stopped.
	var other error
	defer func() {
		if err == nil {
			err = other
		}
	}()
	var waiting []stopping
	for _, p := range pl.stopOrder() {
		pid, err := proc.ReadPidFile(p.PidFile)
		if errors.Is(err, proc.ErrNoPidFile) {
			o.out.say(yellow, "No running worker of %s found (from %s)\nThe process might be managed by another controller (e.g. systemd)", p.App, p.PidFile)
			continue
		}
		if err != nil {
			o.out.say(yellow, "%s not running: %v (removed the pid file)", p.App, err)
			_ = os.Remove(p.PidFile)
			continue
		}
		switch owner(p, pid) {
		case proc.Other:
			other = errOther(p, pid)
			continue
		case proc.Gone:
			o.out.say(yellow, "%s not running (removed stale pid file %s naming pid %d)", p.App, p.PidFile, pid)
			_ = os.Remove(p.PidFile)
			continue
		case proc.Recycled:
			o.out.say(yellow, "%s not running: pid file %s names pid %d, which is now another program (%s); not signalling it (removed the stale pid file)", p.App, p.PidFile, pid, proc.Cmdline(pid))
			_ = os.Remove(p.PidFile)
			continue
		}
		if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
			if errors.Is(err, syscall.ESRCH) {
				o.out.say(yellow, "%s not running", p.App)
				continue
			}
			if errors.Is(err, syscall.EPERM) {
				o.out.complain("Cannot stop %s: Operation not permitted", p.App)
				return fmt.Errorf("%w: stop %s (pid %d)", errPerm, p.App, pid)
			}
			o.out.complain("Cannot stop %s: %v", p.App, err)
			return fmt.Errorf("stop %s: %w", p.App, err)
		}
		o.out.say(green, "stopped %s", p.App)
		waiting = append(waiting, stopping{p: p, pid: pid})
	}
	if len(waiting) == 0 {
		return nil
	}
	o.out.say("", "Waiting for processes to exit...")
	deadline := time.Now().Add(o.timeout)
	for len(waiting) > 0 && time.Now().Before(deadline) {
		var still []stopping
		for _, w := range waiting {
			if proc.Running(w.pid) {
				still = append(still, w)
			}
		}
		waiting = still
		if len(waiting) > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	if len(waiting) == 0 {
		o.out.say("", "All processes exited")
		return nil
	}
	var names []string
	for _, w := range waiting {
		if o.kill {
			_ = syscall.Kill(w.pid, syscall.SIGKILL)
			for i := 0; i < 250 && proc.Running(w.pid); i++ {
				time.Sleep(20 * time.Millisecond)
			}
			_ = os.Remove(w.p.PidFile)
			o.out.say(yellow, "killed %s (pid %d): it did not stop within %s", w.p.App, w.pid, o.timeout)
			continue
		}
		o.out.complain("%s (pid %d) did not stop within %s", w.p.App, w.pid, o.timeout)
		names = append(names, fmt.Sprintf("%s (pid %d)", w.p.App, w.pid))
	}
	if len(names) > 0 {
		return fmt.Errorf("%w within %s: %s", errStop, o.timeout, strings.Join(names, ", "))
	}
	o.out.say("", "All processes exited")
	return nil
}

// procStatus is one line of synctl status (also its --json shape).
type procStatus struct {
	Process string  `json:"process"`
	App     string  `json:"app"`
	PidFile string  `json:"pid_file"`
	Pid     int     `json:"pid,omitempty"`
	State   string  `json:"state"`
	Uptime  float64 `json:"uptime_seconds"`
	Health  string  `json:"health"`
	Version string  `json:"version,omitempty"`
}

func status(ctx context.Context, o *options, pl plan) error {
	client := &http.Client{Timeout: 2 * time.Second}
	var all []procStatus
	for _, p := range pl.startOrder() {
		st := procStatus{Process: p.Name(), App: p.App, PidFile: p.PidFile, State: "stopped", Health: "-"}
		pid, err := proc.ReadPidFile(p.PidFile)
		if err == nil {
			st.Pid = pid
			switch owner(p, pid) {
			case proc.Other:
				st.State = "stopped (pid file names another process)"
			case proc.Ours:
				st.State = "running"
				if t, ok := proc.StartTime(pid); ok {
					st.Uptime = time.Since(t).Round(time.Second).Seconds()
				}
			case proc.Gone:
				st.State = "stopped (stale pid file)"
			case proc.Recycled:
				st.State = "stopped (pid recycled)"
			}
		}
		if st.State == "running" && p.HealthURL != "" {
			st.Health = "unhealthy"
			if err := waitHealthy(ctx, p.HealthURL, 0); err == nil {
				st.Health = "ok"
			}
			if resp, err := client.Get(p.BaseURL + "/_synapse/admin/v1/server_version"); err == nil {
				var v struct {
					ServerVersion string `json:"server_version"`
				}
				_ = json.NewDecoder(resp.Body).Decode(&v)
				resp.Body.Close()
				st.Version = v.ServerVersion
			}
		}
		all = append(all, st)
	}
	// The exit code answers "is everything up?" for scripts.
	var down []string
	for _, st := range all {
		if st.State != "running" || st.Health == "unhealthy" {
			down = append(down, st.Process)
		}
	}
	var verdict error
	if len(down) > 0 {
		verdict = fmt.Errorf("%w: %s", errDown, strings.Join(down, ", "))
	}
	if o.json {
		enc := json.NewEncoder(o.out.stdout)
		for _, st := range all {
			_ = enc.Encode(st)
		}
		return verdict
	}
	tw := tabwriter.NewWriter(o.out.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PROCESS\tPID\tSTATE\tUPTIME\tHEALTH\tVERSION")
	for _, st := range all {
		pid, up := "-", "-"
		if st.Pid != 0 {
			pid = fmt.Sprint(st.Pid)
		}
		if st.State == "running" {
			up = (time.Duration(st.Uptime) * time.Second).String()
		}
		ver := st.Version
		if ver == "" {
			ver = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", st.Process, pid, st.State, up, st.Health, ver)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return verdict
}
