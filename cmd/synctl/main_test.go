package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
	"github.com/spf13/cobra"

	"hsops/internal/clidoc"
	"hsops/internal/pgtest"
	"hsops/internal/scripttest"
	"hsops/internal/testbin"
)

func TestMain(m *testing.M) {
	testscript.Main(withHomeserver{pgtest.Stopping(m)}, map[string]func(){
		"synctl": func() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) },
	})
}

// withHomeserver builds the real homeserver binary onto PATH, since synctl
// launches it as a separate program.
type withHomeserver struct{ m interface{ Run() int } }

func (w withHomeserver) Run() int {
	dir, err := testbin.TempDir("hsops/cmd/homeserver")
	if err != nil {
		fmt.Fprintf(os.Stderr, "build homeserver: %v\n", err)
		return 1
	}
	defer os.RemoveAll(dir)
	os.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	code := w.m.Run()
	killLeftovers(filepath.Join(dir, "homeserver"))
	return code
}

// killLeftovers kills the engine processes a failed script left running
// (a passing script stops what it starts).
func killLeftovers(bin string) {
	exes, _ := filepath.Glob("/proc/[0-9]*/exe")
	for _, exe := range exes {
		if target, err := os.Readlink(exe); err == nil && target == bin {
			var pid int
			if _, err := fmt.Sscanf(exe, "/proc/%d/exe", &pid); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
}

func TestScripts(t *testing.T) {
	scripttest.Run(t, scripttest.Params("testdata/script"))
}

// TestDocs holds docs/reference, docs/man and the exit table of
// docs/synctl.md to what the commands say (regenerate them with
// go test ./cmd/synctl -run TestDocs -update).
func TestDocs(t *testing.T) {
	clidoc.Test(t, tool, func() *cobra.Command { return newRootCmd(io.Discard, io.Discard) })
}
