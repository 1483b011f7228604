package main

import (
	"io"
	"testing"

	"hsops/internal/clidoc"
	"hsops/internal/scripttest"
)

// TestDocs holds docs/reference and docs/man to what the commands say
// (regenerate with go test ./cmd/update_database -run TestDocs -update).
func TestDocs(t *testing.T) {
	clidoc.Check(t, "../../docs", tool, newRootCmd(&globals{stdout: io.Discard, stderr: io.Discard}), scripttest.Update())
}
