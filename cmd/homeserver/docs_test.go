package main

import (
	"io"
	"testing"

	"hsops/internal/clidoc"
	"hsops/internal/scripttest"
)

// TestDocs holds docs/reference and docs/man to what the commands say
// (regenerate with go test ./cmd/homeserver -run TestDocs -update).
func TestDocs(t *testing.T) {
	clidoc.Check(t, "../../docs", tool, newRootCmd(nil, io.Discard, io.Discard), scripttest.Update())
}
