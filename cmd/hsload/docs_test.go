package main

import (
	"context"
	"io"
	"testing"

	"hsops/internal/clidoc"
	"hsops/internal/scripttest"
)

// TestDocs holds docs/reference and docs/man to what the commands say
// (regenerate with go test ./cmd/hsload -run TestDocs -update).
func TestDocs(t *testing.T) {
	clidoc.Check(t, "../../docs", tool, newRootCmd(context.Background(), io.Discard, io.Discard), scripttest.Update())
}
