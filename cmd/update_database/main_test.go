package main

import (
	"context"
	"io"
	"os"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"hsops/internal/config"
	"hsops/internal/pgtest"
	"hsops/internal/scripttest"
	"hsops/internal/server"
)

func TestMain(m *testing.M) {
	testscript.Main(pgtest.Stopping(m), map[string]func(){
		"update_database": func() { os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) },
	})
}

func TestScripts(t *testing.T) {
	p := scripttest.Params("testdata/script")
	p.Cmds["serve"] = serve
	p.Cmds["waitfor"] = waitfor
	scripttest.Run(t, p)
}

// serve CONFIG... runs the engine in the test process on the configs until
// the script ends (upgrade-check asks a running server).
func serve(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) == 0 {
		ts.Fatalf("usage: serve CONFIG...")
	}
	for i, a := range args {
		args[i] = ts.MkAbs(a)
	}
	cfg, err := config.Load(args...)
	ts.Check(err)
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.Start(ctx, server.Options{Config: cfg, Log: server.NewLogger(io.Discard, "test")})
	if err != nil {
		cancel()
		ts.Fatalf("serve: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	ts.Defer(func() {
		cancel()
		<-done
	})
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
