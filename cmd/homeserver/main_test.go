package main

import (
	"os"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

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
