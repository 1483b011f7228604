package main

import (
	"io"
	"os"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
	"github.com/spf13/cobra"

	"hsops/internal/clidoc"
	"hsops/internal/pgtest"
	"hsops/internal/scripttest"
)

func TestMain(m *testing.M) {
	testscript.Main(pgtest.Stopping(m), map[string]func(){
		"update_database": func() { os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) },
	})
}

func TestScripts(t *testing.T) {
	p := scripttest.Params("testdata/script")
	p.Cmds["serve"] = scripttest.Serve
	p.Cmds["waitfor"] = waitfor
	scripttest.Run(t, p)
}

// waitfor FILE waits (up to a minute) for a file to exist: a run started
// in the background with & has reached that point.
func waitfor(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: waitfor FILE")
	}
	p := ts.MkAbs(args[0])
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(p); err == nil {
			return
		}
	}
	ts.Fatalf("waitfor: %s did not appear", args[0])
}

// TestDocs holds docs/reference, docs/man and the exit table of
// docs/update_database.md to what the commands say (regenerate them with
// go test ./cmd/update_database -run TestDocs -update).
func TestDocs(t *testing.T) {
	clidoc.Test(t, tool, func() *cobra.Command { return newRootCmd(&globals{stdout: io.Discard, stderr: io.Discard}) })
}
