package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
	"github.com/spf13/cobra"

	"hsops/internal/clidoc"
	"hsops/internal/config"
	"hsops/internal/db"
	"hsops/internal/gen"
	"hsops/internal/pgtest"
	"hsops/internal/porter"
	"hsops/internal/scripttest"
	"hsops/internal/testbin"
	"hsops/schema"
	"hsops/schema/engine"
)

func TestMain(m *testing.M) {
	testscript.Main(pgtest.Stopping(m), map[string]func(){
		"port_db": func() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) },
	})
}

func TestScripts(t *testing.T) {
	p := scripttest.Params("testdata/script")
	p.Cmds["mksource"] = mksource
	scripttest.Run(t, p)
}

// mksource FILE USERS ROOMS MESSAGES: an engine SQLite database filled by
// the generator.
func mksource(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 4 {
		ts.Fatalf("usage: mksource FILE USERS ROOMS MESSAGES")
	}
	var n [3]int
	for i := range n {
		fmt.Sscan(args[i+1], &n[i])
	}
	if err := makeSource(ts.MkAbs(args[0]), gen.Params{Users: n[0], Rooms: n[1], Messages: n[2], Backfilled: 2, Seed: 7}); err != nil {
		ts.Fatalf("mksource: %v", err)
	}
}

func makeSource(path string, p gen.Params) error {
	ctx := context.Background()
	d, err := db.Open(ctx, config.Database{Name: config.EngineSQLite, Args: map[string]string{"database": path}}, db.Options{Create: true})
	if err != nil {
		return err
	}
	defer d.Close()
	if _, err := engine.Schema().Apply(ctx, d, schema.Options{ServerName: "example.org"}); err != nil {
		return err
	}
	_, err = gen.Generate(ctx, d, p)
	return err
}

// TestInterrupt_SaysWhatIsCommitted stops a port with Ctrl-C (SIGINT) after
// its first committed batch: it exits 130 with one line saying what the
// copy kept and to run the same command again (never a raw "context
// canceled"), and the same command then finishes the port.
func TestInterrupt_SaysWhatIsCommitted(t *testing.T) {
	dir := t.TempDir()
	bin := testbin.Command(t, dir, "hsops/cmd/port_db")
	src := filepath.Join(dir, "homeserver.db")
	if err := makeSource(src, gen.Params{Users: 20, Rooms: 3, Messages: 2000, Backfilled: 2, Seed: 3}); err != nil {
		t.Fatal(err)
	}
	tgt := pgtest.NewDatabase(t)
	cfg := filepath.Join(dir, "pg.yaml")
	if err := os.WriteFile(cfg, []byte("server_name: example.org\n"+tgt.YAML()), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"--sqlite-database", src, "--postgres-config", cfg, "--batch-size", "20", "--jobs", "1"}
	cmd := exec.Command(bin, append(args, "--json")...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 1<<16), 1<<22)
	signalled := false
	for sc.Scan() {
		var ev porter.Event
		if !signalled && json.Unmarshal(sc.Bytes(), &ev) == nil && ev.Type == "batch" {
			if err := cmd.Process.Signal(os.Interrupt); err != nil {
				t.Fatal(err)
			}
			signalled = true
		}
	}
	err = cmd.Wait()
	if !signalled {
		t.Fatalf("no batch was reported: %v\n%s", err, stderr.String())
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 130 {
		t.Fatalf("interrupted port: %v, want exit 130\n%s", err, stderr.String())
	}
	want := regexp.MustCompile(`^port_db: interrupted: \d+ of \d+ tables copied by this run(; the one being copied keeps its committed batches|; the \d+ being copied keep their committed batches)?, run the same command again\n$`)
	t.Logf("%s", stderr.String())
	if got := stderr.String(); !want.MatchString(got) || strings.Contains(got, "context canceled") {
		t.Errorf("an interrupted port says:\n%s", got)
	}
	if out, err := exec.Command(bin, append(args, "--verify")...).CombinedOutput(); err != nil {
		t.Fatalf("the same command again: %v\n%s", err, out)
	}
}

// TestDocs holds docs/reference, docs/man and the exit table of
// docs/port_db.md to what the commands say (regenerate them with
// go test ./cmd/port_db -run TestDocs -update).
func TestDocs(t *testing.T) {
	clidoc.Test(t, tool, func() *cobra.Command { return newRootCmd(context.Background(), io.Discard, io.Discard) })
}
