package main

import (
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
		"homeserver": func() { os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) },
	})
}

func TestScripts(t *testing.T) {
	scripttest.Run(t, scripttest.Params("testdata/script"))
}

// TestDocs holds docs/reference, docs/man and the exit table of
// docs/homeserver.md to what the commands say (regenerate them with
// go test ./cmd/homeserver -run TestDocs -update).
func TestDocs(t *testing.T) {
	clidoc.Test(t, tool, func() *cobra.Command { return newRootCmd(nil, io.Discard, io.Discard) })
}
