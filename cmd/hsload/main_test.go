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
		"hsload": func() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) },
	})
}

func TestScripts(t *testing.T) {
	p := scripttest.Params("testdata/script")
	p.Cmds["serve"] = scripttest.Serve
	scripttest.Run(t, p)
}
