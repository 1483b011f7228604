package cutover

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"hsops/internal/proc"
)

// TestSwitch_KillAnywhere kills port_db --switch-config (SIGKILL) at each
// step. Whatever the moment, the config is either the old one or names a
// completely ported database; and the same command then finishes the job
// with every message there.
func TestSwitch_KillAnywhere(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the homeserver and kills port_db")
	}
	for _, tc := range []struct {
		name string
		at   func(ev map[string]any) bool
	}{
		{"pre-copy", phaseIs("pre-copy")},
		{"stop", phaseIs("stop")},
		{"final port begins", phaseIs("final-port")},
		{"final port copying", func(ev map[string]any) bool {
			port, _ := ev["port"].(map[string]any)
			return ev["event"] == "port" && port["event"] == "table_done" && port["table"] == "events" && ev["phase"] == nil && finalStarted
		}},
		{"rewrite", phaseIs("rewrite")},
		{"start", phaseIs("start")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			finalStarted = false
			d := newDeployment(t, false)
			d.load("alice", 60)
			before := d.digest("alice")
			args := []string{"--sqlite-database", d.sqlite, "--postgres-config", d.pgConfig, "--switch-config", d.config,
				"--homeserver", filepath.Join(binDir, "homeserver"), "--timeout", "30s", "--batch-size", "20"}
			killSwitch(t, d, args, tc.at, nil)

			// The invariant.
			data, err := os.ReadFile(d.config)
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case string(data) == string(d.original):
			case d.database().IsPostgres() && d.portComplete():
			default:
				t.Fatalf("after the kill the config is neither the old one nor a complete port's:\n%s", data)
			}

			// The same command finishes the job.
			d.run(0, "port_db", args...)
			if !d.database().IsPostgres() {
				t.Fatal("not switched")
			}
			d.healthy()
			if got := d.digest("alice"); got != before {
				t.Fatalf("digest on PostgreSQL %s, on SQLite %s", got, before)
			}
		})
	}
}

// killSwitch runs port_db --switch-config with args and kills it (SIGKILL)
// at the first event for which at is true, once before (if not nil) has
// run.
func killSwitch(t *testing.T, d *deployment, args []string, at func(ev map[string]any) bool, before func()) {
	t.Helper()
	killed := false
	_ = runSwitch(t, d, args, func(ev map[string]any, p *os.Process) {
		if ev["event"] == "phase" && ev["phase"] == "final-port" {
			finalStarted = true
		}
		if !killed && at(ev) {
			if before != nil {
				before()
			}
			_ = p.Signal(syscall.SIGKILL)
			killed = true
		}
	})
	if !killed {
		t.Fatal("the switch ended before the kill point")
	}
}

// runSwitch runs port_db --switch-config with args (and --json -v), hands
// each event to on with the process, and returns how the run ended.
func runSwitch(t *testing.T, d *deployment, args []string, on func(ev map[string]any, p *os.Process)) error {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "port_db"), append(args, "--json", "-v")...)
	cmd.Dir = d.dir
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var ev map[string]any
		if json.Unmarshal(sc.Bytes(), &ev) == nil {
			on(ev, cmd.Process)
		}
	}
	return cmd.Wait()
}

// TestSwitch_KilledWhileTheHomeserverStarts: port_db is killed once the
// homeserver it launched on PostgreSQL runs but has not yet written its pid
// file (frozen there by SIGSTOP). The same command finds that process by
// its configs and waits for it: a second launch beside it would only find
// its database locked.
func TestSwitch_KilledWhileTheHomeserverStarts(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the homeserver and kills port_db")
	}
	d := newDeployment(t, false)
	d.load("alice", 20)
	before := d.digest("alice")
	args := []string{"--sqlite-database", d.sqlite, "--postgres-config", d.pgConfig, "--switch-config", d.config,
		"--homeserver", filepath.Join(binDir, "homeserver"), "--timeout", "30s"}
	target := d.plan().Main.Target()
	var frozen []int
	killSwitch(t, d, args, phaseIs("start"), func() {
		for i := 0; ; i++ {
			v := proc.HomeserverRunning(target)
			if v.State == proc.Starting {
				for _, h := range v.Holders {
					if h.ByConfigs && syscall.Kill(h.Pid, syscall.SIGSTOP) == nil {
						frozen = append(frozen, h.Pid)
					}
				}
				return
			}
			if v.State == proc.Running || i == 10000 {
				t.Fatalf("the homeserver was never seen starting (state %d)", v.State)
			}
			time.Sleep(time.Millisecond)
		}
	})
	thaw := func() {
		for _, pid := range frozen {
			_ = syscall.Kill(pid, syscall.SIGCONT)
		}
	}
	defer thaw()

	waited := false
	err := runSwitch(t, d, args, func(ev map[string]any, _ *os.Process) {
		if msg, _ := ev["message"].(string); strings.Contains(msg, "already starting") {
			waited = true
			thaw()
		}
	})
	if err != nil {
		t.Fatalf("the same command again: %v", err)
	}
	if !waited {
		t.Fatal("the re-run did not wait for the starting homeserver")
	}
	d.healthy()
	if got := d.digest("alice"); got != before {
		t.Fatalf("digest on PostgreSQL %s, on SQLite %s", got, before)
	}
}

// finalStarted is set once the killed run's final port began (the kill
// point "final port copying" is a table of that port, not of a pre-copy).
var finalStarted bool

func phaseIs(name string) func(map[string]any) bool {
	return func(ev map[string]any) bool { return ev["event"] == "phase" && ev["phase"] == name }
}
