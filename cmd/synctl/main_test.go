package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"hsops/internal/pgtest"
	"hsops/internal/scripttest"
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
	dir, err := os.MkdirTemp("", "synctl-test-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	out, err := exec.Command("go", "build", "-o", filepath.Join(dir, "homeserver"), "hsops/cmd/homeserver").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build homeserver: %v\n%s", err, out)
		return 1
	}
	os.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	return w.m.Run()
}

func TestScripts(t *testing.T) {
	testscript.Run(t, scripttest.Params("testdata/script"))
}
