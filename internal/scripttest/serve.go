package scripttest

import (
	"context"
	"io"

	"github.com/rogpeppe/go-internal/testscript"

	"hsops/internal/config"
	"hsops/internal/server"
)

// Serve is the script command serve CONFIG...: it runs the engine in the
// test process on the configs until the script ends.
func Serve(ts *testscript.TestScript, neg bool, args []string) {
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
