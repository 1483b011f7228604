package synapse

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// PythonEnv is the environment variable that names the Python of the
// Synapse installation when no --python flag does; PythonEnvOld is its
// older, synctl-only name, still read.
const (
	PythonEnv    = "SYNAPSE_PYTHON"
	PythonEnvOld = "SYNCTL_PYTHON"
)

// entryPoints are console scripts the synapse package installs; the first
// found on PATH names its interpreter in its #! line.
var entryPoints = []string{"update_synapse_database", "synapse_homeserver", "synctl"}

// Python is an interpreter of a Synapse installation and where it was
// found.
type Python struct {
	// Path is the interpreter ("" when none was found).
	Path string
	// From says where it came from: "--python", "SYNAPSE_PYTHON",
	// "SYNCTL_PYTHON", or "PATH (<script>)".
	From string
}

// ResolvePython is the one way hsops tools find Synapse's Python: the flag
// if given, else $SYNAPSE_PYTHON (or the older $SYNCTL_PYTHON), else the
// interpreter of the synapse package on PATH (the #! line of its
// update_synapse_database, synapse_homeserver or synctl script, as pip
// installs them into a virtualenv's bin). A zero Python means none.
//
// The Python is not run: Probe tells whether it really has Synapse.
func ResolvePython(flag string) Python {
	if flag != "" {
		return Python{Path: flag, From: "--python"}
	}
	for _, env := range []string{PythonEnv, PythonEnvOld} {
		if v := os.Getenv(env); v != "" {
			return Python{Path: v, From: env}
		}
	}
	for _, name := range entryPoints {
		script, err := exec.LookPath(name)
		if err != nil {
			continue
		}
		if py := interpreterOf(script); py != "" {
			return Python{Path: py, From: "PATH (" + script + ")"}
		}
	}
	return Python{}
}

// interpreterOf is the Python a script's #! line names, if it names an
// existing python executable.
func interpreterOf(script string) string {
	f, err := os.Open(script)
	if err != nil {
		return ""
	}
	defer f.Close()
	line, err := bufio.NewReader(f).ReadString('\n')
	if err != nil && line == "" {
		return ""
	}
	line = strings.TrimSpace(line)
	if !strings.HasPrefix(line, "#!") {
		return ""
	}
	fields := strings.Fields(strings.TrimPrefix(line, "#!"))
	if len(fields) == 0 {
		return ""
	}
	py := fields[0]
	if filepath.Base(py) == "env" && len(fields) > 1 {
		// #!/usr/bin/env python3: the python3 on PATH.
		p, err := exec.LookPath(fields[1])
		if err != nil {
			return ""
		}
		py = p
	}
	if !strings.HasPrefix(filepath.Base(py), "python") {
		return ""
	}
	if st, err := os.Stat(py); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
		return ""
	}
	return py
}
