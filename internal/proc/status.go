package proc

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// ProcessStatus is where one process stands (also synctl status --json's
// shape).
type ProcessStatus struct {
	Process string  `json:"process"`
	App     string  `json:"app"`
	PidFile string  `json:"pid_file"`
	Pid     int     `json:"pid,omitempty"`
	State   string  `json:"state"`
	Uptime  float64 `json:"uptime_seconds"`
	Health  string  `json:"health"`
	Version string  `json:"version,omitempty"`
}

// Up reports whether the process is running and not unhealthy.
func (st ProcessStatus) Up() bool {
	return st.State == "running" && st.Health != "unhealthy"
}

// stateNames are the states as status shows them.
var stateNames = map[State]string{
	NoPidFile:  "stopped",
	BadPidFile: "stopped",
	Stale:      "stopped (stale pid file)",
	Recycled:   "stopped (pid recycled)",
	Other:      "stopped (pid file names another process)",
	Running:    "running",
	Starting:   "starting",
}

// Status reads where each process of the plan stands: its state from its
// pid file, and for a running one its uptime, its /health and its version.
func (s *Supervisor) Status(ctx context.Context, pl Plan) []ProcessStatus {
	client := &http.Client{Timeout: 2 * time.Second}
	var all []ProcessStatus
	for _, p := range pl.StartOrder() {
		v := HomeserverRunning(p.Target())
		st := ProcessStatus{Process: p.Name(), App: p.App, PidFile: p.PidFile, Pid: v.Pid, State: stateNames[v.State], Health: "-"}
		if v.State == Running && !v.Holders[0].Since.IsZero() {
			st.Uptime = time.Since(v.Holders[0].Since).Round(time.Second).Seconds()
		}
		if (v.State == Running || v.State == Starting) && p.HealthURL != "" {
			st.Health = "unhealthy"
			if err := WaitHealthy(ctx, p.HealthURL, 0); err == nil {
				st.Health = "ok"
			}
			st.Version = serverVersion(ctx, client, p.BaseURL)
		}
		all = append(all, st)
	}
	return all
}

// serverVersion asks a process its version ("" when it does not answer).
func serverVersion(ctx context.Context, client *http.Client, base string) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/_synapse/admin/v1/server_version", nil)
	if err != nil {
		return ""
	}
	resp, err := client.Do(req)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	var v struct {
		ServerVersion string `json:"server_version"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&v)
	return v.ServerVersion
}

// AllUp answers "is everything up?" for scripts: nil, or ErrDown naming
// the processes that are not running or not healthy.
func AllUp(all []ProcessStatus) error {
	var down []string
	for _, st := range all {
		if !st.Up() {
			down = append(down, st.Process)
		}
	}
	if len(down) > 0 {
		return fmt.Errorf("%w: %s", ErrDown, strings.Join(down, ", "))
	}
	return nil
}
