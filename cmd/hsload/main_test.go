package main

import (
	"context"
	"io"
	"os"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
	"github.com/spf13/cobra"

	"hsops/internal/clidoc"
	"hsops/internal/pgtest"
	"hsops/internal/scripttest"
)

func TestMain(m *testing.M) {
	testscript.Main(pgtest.Stopping(m), map[string]func(){
		"hsload": func() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) },
	})
}

func TestScripts(t *testing.T) {
	p := scripttest.Params("testdata/script")
	p.Cmds["serve"] = scripttest.Serve
	scripttest.Run(t, p)
}

// TestDocs holds docs/reference, docs/man and the exit table of
// docs/hsload.md to what the commands say (regenerate them with
// go test ./cmd/hsload -run TestDocs -update).
func TestDocs(t *testing.T) {
	clidoc.Test(t, tool, func() *cobra.Command { return newRootCmd(context.Background(), io.Discard, io.Discard) })
}
