package synapse

import (
	"os"
	"path/filepath"
	"testing"
)

func TestResolvePython(t *testing.T) {
	dir := t.TempDir()
	py := filepath.Join(dir, "venv", "bin", "python3")
	if err := os.MkdirAll(filepath.Dir(py), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(py, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	script := func(name, shebang string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(filepath.Dir(py), name), []byte("#!"+shebang+"\nimport sys\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv(PythonEnv, "")
	t.Setenv(PythonEnvOld, "")
	t.Setenv("PATH", filepath.Join(dir, "empty"))

	if got := ResolvePython(""); got.Path != "" {
		t.Fatalf("nothing anywhere: got %+v", got)
	}
	// A console script whose #! is not a Python is not taken.
	script("synctl", "/bin/sh")
	t.Setenv("PATH", filepath.Dir(py))
	if got := ResolvePython(""); got.Path != "" {
		t.Fatalf("synctl with #!/bin/sh: got %+v", got)
	}
	script("synapse_homeserver", py)
	if got := ResolvePython(""); got.Path != py || got.From != "PATH ("+filepath.Join(filepath.Dir(py), "synapse_homeserver")+")" {
		t.Fatalf("synapse_homeserver on PATH: got %+v", got)
	}
	// #!/usr/bin/env python3 is the python3 on PATH.
	script("update_synapse_database", "/usr/bin/env python3")
	if got := ResolvePython(""); got.Path != py {
		t.Fatalf("#!/usr/bin/env python3: got %+v", got)
	}
	t.Setenv(PythonEnvOld, "/old")
	if got := ResolvePython(""); got != (Python{Path: "/old", From: PythonEnvOld}) {
		t.Fatalf("SYNCTL_PYTHON: got %+v", got)
	}
	t.Setenv(PythonEnv, "/new")
	if got := ResolvePython(""); got != (Python{Path: "/new", From: PythonEnv}) {
		t.Fatalf("SYNAPSE_PYTHON: got %+v", got)
	}
	if got := ResolvePython("/flag"); got != (Python{Path: "/flag", From: "--python"}) {
		t.Fatalf("--python: got %+v", got)
	}
}
