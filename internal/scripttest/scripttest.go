// Package scripttest gives the CLI's testscript scripts what they need:
// a PostgreSQL database per script, the Synapse fixture's path, and
// commands to write configs and to run SQL against either engine.
//
// In scripts:
//
//	mkconfig hs.yaml sqlite [path]   write a homeserver.yaml using SQLite (default path: $WORK/homeserver.db)
//	mkconfig hs.yaml pg              write a homeserver.yaml using the script's PostgreSQL database
//	mkdb TARGET VERSION              create an engine database at a schema version (TARGET: a SQLite file or "pg")
//	sql TARGET 'QUERY'               run SQL (TARGET: a SQLite file or "pg"); rows go to stdout as a|b|c
//	freeport NAME...                 set each variable to a free loopback TCP port
//	subst FILE...                    replace $VAR and ${VAR} in files with the script's variables
//	httpget URL                      GET a URL; the body goes to stdout ("! httpget" expects a failure)
//	portfree PORT                    assert that nothing listens on 127.0.0.1:PORT
//	exits CODE PROG [ARG...]         run PROG like exec and assert its exit code (stdout and stderr kept for the next assertions)
//
// Variables: $FIXTURE is the real Synapse v1.98 SQLite database (read-only:
// copy it first), $PGDB the script's PostgreSQL database name (a database
// is made only for a script that names pg, pgdrop or $PGDB),
// $FAKE_SYNAPSE_PYTHON the stand-in Synapse's Python (testdata/fakesynapse).
//
// Golden files: a script compares a command's output with a file of its
// archive (cmp stdout want.txt); Run with -update rewrites those files in
// the scripts with what the commands print (go test ./cmd/... -update, or
// one package's), for review with git diff.
package scripttest

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"hsops/internal/config"
	"hsops/internal/db"
	"hsops/internal/pgtest"
	"hsops/schema"
	"hsops/schema/engine"
)

// Fixture is the path of the real Synapse database fixture.
func Fixture() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "testdata", "shared", "fixtures", "synapse-1.98-sqlite", "homeserver.db")
}

// Fixtures is the directory of the project's own fixtures (testdata/fixtures).
func Fixtures() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "testdata", "fixtures")
}

// update is the -update flag of every package whose tests run scripts.
var update = flag.Bool("update", false, "rewrite the golden files of the scripts (cmp stdout FILE) with what the commands print, the generated docs, and the journeys' golden transcripts")

// Update reports whether the tests run with -update: golden files and
// generated docs are rewritten instead of compared.
func Update() bool { return *update }

// Run runs the scripts of p; with -update their golden files are
// rewritten instead of compared.
func Run(t *testing.T, p testscript.Params) {
	t.Helper()
	p.UpdateScripts = *update
	testscript.Run(t, p)
}

// Params returns testscript parameters for dir with the helpers installed.
func Params(dir string) testscript.Params {
	return testscript.Params{
		Dir:                 dir,
		RequireExplicitExec: true,
		Setup:               func(env *testscript.Env) error { return setup(env, dir) },
		Condition:           condition,
		Cmds: map[string]func(*testscript.TestScript, bool, []string){
			"mkconfig": mkconfig, "mkdb": mkdb, "sql": sqlCmd, "freeport": freeport, "subst": subst, "httpget": httpget, "portfree": portfree, "pgdrop": pgdrop, "exits": exits,
		},
	}
}

// bashCompletion is the bash-completion package's script, which the
// tools' bash completions need.
const bashCompletion = "/usr/share/bash-completion/bash_completion"

// condition knows the scripts' own conditions: [bash-completion] holds when
// the bash-completion package is installed.
func condition(cond string) (bool, error) {
	switch cond {
	case "bash-completion":
		_, err := os.Stat(bashCompletion)
		return err == nil, nil
	}
	return false, fmt.Errorf("unknown condition %q", cond)
}

// exits CODE PROG [ARG...] runs a program as exec does and checks its exit
// code: the tools' exit codes are part of their interface.
func exits(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: exits CODE PROG [ARG...]")
	}
	want, err := strconv.Atoi(args[0])
	if err != nil {
		ts.Fatalf("exits: bad code %q", args[0])
	}
	err = ts.Exec(args[1], args[2:]...)
	got := 0
	if err != nil {
		var ee interface{ ExitCode() int }
		if !errors.As(err, &ee) {
			ts.Fatalf("exits: %s: %v", args[1], err)
		}
		got = ee.ExitCode()
	}
	if got != want {
		ts.Fatalf("%s exited with %d, want %d", args[1], got, want)
	}
}

const pgKey = "hsops-pg-database"

// noPostgres is the value of pgKey for a script that names no PostgreSQL.
type noPostgres struct{}

// usesPostgres matches what in a script needs its PostgreSQL database: the
// pg target of mkconfig, mkdb and sql, pgdrop, and $PGDB.
var usesPostgres = regexp.MustCompile(`\bpg\b|\bpgdrop\b|\$\{?PGDB\b`)

// scriptUsesPostgres reports whether the script of env (a file of dir
// named for the subtest) needs a PostgreSQL database; true when it cannot
// tell.
func scriptUsesPostgres(env *testscript.Env, dir string) bool {
	named, ok := env.T().(interface{ Name() string })
	if !ok {
		return true
	}
	name := named.Name()
	name = name[strings.LastIndex(name, "/")+1:]
	for _, ext := range []string{".txtar", ".txt"} {
		if data, err := os.ReadFile(filepath.Join(dir, name+ext)); err == nil {
			return usesPostgres.Match(data)
		}
	}
	return true
}

// setup gives a script its variables and, when it names one, a PostgreSQL
// database of its own (creating and dropping one costs a second of a
// loaded machine, and the first starts the package's cluster).
func setup(env *testscript.Env, dir string) error {
	env.Setenv("FIXTURE", Fixture())
	env.Setenv("FIXTURES", Fixtures())
	env.Setenv("FAKE_SYNAPSE_PYTHON", filepath.Join(Fixtures(), "..", "fakesynapse", "python"))
	if !scriptUsesPostgres(env, dir) {
		env.Values[pgKey] = noPostgres{}
		env.Setenv("PGDB", "")
		return nil
	}
	if _, err := pgtest.Admin(); err != nil {
		if os.Getenv("CI") == "true" {
			return fmt.Errorf("no PostgreSQL for the scripts: %w", err)
		}
		env.Setenv("PGDB", "")
		return nil
	}
	d, err := pgtest.Create("C")
	if err != nil {
		return err
	}
	env.Values[pgKey] = d
	env.Setenv("PGDB", d.Name)
	env.Defer(func() { _ = pgtest.DropDatabase(d.Name) })
	return nil
}

func pgDatabase(ts *testscript.TestScript) pgtest.Database {
	if _, ok := ts.Value(pgKey).(noPostgres); ok {
		ts.Fatalf("no PostgreSQL database was made for this script: it does not name one (pg, pgdrop or $PGDB), see scripttest.usesPostgres")
	}
	d, ok := ts.Value(pgKey).(pgtest.Database)
	if !ok {
		ts.Fatalf("no PostgreSQL available for this script (set %s)", pgtest.EnvURL)
	}
	return d
}

// mkconfig FILE sqlite|pg [sqlite-path]
func mkconfig(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: mkconfig FILE sqlite|pg [sqlite-path]")
	}
	var b strings.Builder
	b.WriteString("server_name: example.org\nreport_stats: false\npid_file: " + ts.MkAbs("homeserver.pid") + "\n")
	switch args[1] {
	case "sqlite":
		p := ts.MkAbs("homeserver.db")
		if len(args) > 2 {
			p = ts.MkAbs(args[2])
		}
		fmt.Fprintf(&b, "database:\n  name: sqlite3\n  args:\n    database: %s\n", p)
	case "pg":
		b.WriteString(pgDatabase(ts).YAML())
	default:
		ts.Fatalf("mkconfig: unknown engine %q", args[1])
	}
	ts.Check(os.WriteFile(ts.MkAbs(args[0]), []byte(b.String()), 0o600))
}

// sql TARGET QUERY
func sqlCmd(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: sql TARGET QUERY")
	}
	var cfg config.Database
	if args[0] == "pg" {
		cfg = pgDatabase(ts).Config
	} else {
		cfg = config.Database{Name: config.EngineSQLite, Args: map[string]string{"database": ts.MkAbs(args[0])}}
	}
	ctx := context.Background()
	d, err := db.Open(ctx, cfg, db.Options{})
	if err != nil {
		ts.Fatalf("sql: %v", err)
	}
	defer d.Close()
	err = query(ctx, ts, d, args[1])
	if neg {
		if err == nil {
			ts.Fatalf("sql: unexpected success")
		}
		return
	}
	if err != nil {
		ts.Fatalf("sql: %v", err)
	}
}

func query(ctx context.Context, ts *testscript.TestScript, d *db.DB, q string) error {
	rows, err := d.QueryContext(ctx, q)
	if err != nil {
		return err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return err
	}
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return err
		}
		out := make([]string, len(cols))
		for i, v := range vals {
			switch x := v.(type) {
			case nil:
				out[i] = "NULL"
			case []byte:
				out[i] = string(x)
			default:
				out[i] = fmt.Sprint(x)
			}
		}
		fmt.Fprintln(ts.Stdout(), strings.Join(out, "|"))
	}
	return rows.Err()
}

// freeport NAME...
func freeport(ts *testscript.TestScript, neg bool, args []string) {
	for _, name := range args {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		ts.Check(err)
		ts.Setenv(name, strconv.Itoa(l.Addr().(*net.TCPAddr).Port))
		l.Close()
	}
}

// pgdrop NAME drops a database of the test server.
func pgdrop(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: pgdrop NAME")
	}
	ts.Check(pgtest.DropDatabase(args[0]))
}

// subst FILE...
func subst(ts *testscript.TestScript, neg bool, args []string) {
	for _, f := range args {
		data, err := os.ReadFile(ts.MkAbs(f))
		ts.Check(err)
		out := os.Expand(string(data), ts.Getenv)
		ts.Check(os.WriteFile(ts.MkAbs(f), []byte(out), 0o600))
	}
}

// httpget URL
func httpget(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: httpget URL")
	}
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(args[0])
	if err == nil && resp.StatusCode != 200 {
		err = fmt.Errorf("status %s", resp.Status)
	}
	if err != nil {
		if resp != nil {
			resp.Body.Close()
		}
		if neg {
			return
		}
		ts.Fatalf("httpget %s: %v", args[0], err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if neg {
		ts.Fatalf("httpget %s: unexpected success", args[0])
	}
	fmt.Fprintln(ts.Stdout(), string(body))
}

// portfree PORT
func portfree(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: portfree PORT")
	}
	conn, err := net.DialTimeout("tcp", "127.0.0.1:"+args[0], time.Second)
	if err == nil {
		conn.Close()
		if !neg {
			ts.Fatalf("something still listens on port %s", args[0])
		}
		return
	}
	if neg {
		ts.Fatalf("nothing listens on port %s", args[0])
	}
}

// mkdb TARGET VERSION
func mkdb(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: mkdb TARGET VERSION")
	}
	v, err := strconv.Atoi(args[1])
	ts.Check(err)
	var cfg config.Database
	if args[0] == "pg" {
		cfg = pgDatabase(ts).Config
	} else {
		cfg = config.Database{Name: config.EngineSQLite, Args: map[string]string{"database": ts.MkAbs(args[0])}}
	}
	ctx := context.Background()
	d, err := db.Open(ctx, cfg, db.Options{Create: true})
	ts.Check(err)
	defer d.Close()
	_, err = engine.Schema().Apply(ctx, d, schema.Options{Target: v, ServerName: "example.org"})
	ts.Check(err)
}
