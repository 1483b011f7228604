package main

import (
	"io"
	"testing"

	"hsops/internal/clidoc"
	"hsops/internal/scripttest"
)

// TestDocs holds docs/reference and docs/man to what the commands say
// (regenerate with go test ./cmd/synctl -run TestDocs -update).
func TestDocs(t *testing.T) {
	clidoc.Check(t, "../../docs", tool, newRootCmd(io.Discard, io.Discard), scripttest.Update())
}
