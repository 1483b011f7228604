// Package buildinfo reports the version of the hsops binaries.
//
// Release builds inject the version with
//
//	go build -ldflags "-X hsops/internal/buildinfo.version=v1.2.3"
//
// and every other build falls back to what the Go toolchain recorded in the
// binary (the module version, or the VCS revision when built from a checkout).
package buildinfo

import (
	"runtime/debug"
	"strings"
)

// version is set at link time; empty means "ask the build info".
var version string

// Version returns the version string shown by every tool's --version.
func Version() string {
	if version != "" {
		return version
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "(devel)"
	}
	if v := info.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, modified string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = "-dirty"
			}
		}
	}
	if rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		return "(devel) " + rev + modified
	}
	return "(devel)"
}

// ServerVersion is the version string the homeserver engine reports on
// /_synapse/admin/v1/server_version. It never contains spaces so that tools
// parsing "hsops/<version>" can split on the slash.
func ServerVersion() string {
	return "hsops/" + strings.ReplaceAll(Version(), " ", "-")
}
