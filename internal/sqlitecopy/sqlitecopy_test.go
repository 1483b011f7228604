package sqlitecopy

import (
	"bufio"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"hsops/internal/db"
)

// sqliteWriter is another process that keeps inserting rows with
// consecutive ids into t, as a serving homeserver writes; it says
// "writing" once its first 50 rows are committed (in WAL mode, in the WAL).
// It pauses a millisecond between commits, as a homeserver does between
// requests: in rollback-journal mode a writer that never lets go of the
// file starves every reader (SQLite's busy handler polls), whoever it is.
const sqliteWriter = `
import sqlite3, sys, time
c = sqlite3.connect(sys.argv[1], timeout=60, isolation_level=None)
n = int(sys.argv[2])
while True:
    n += 1
    c.execute("INSERT INTO t VALUES (?, randomblob(1000))", (n,))
    time.sleep(0.001)
    if n == int(sys.argv[2]) + 50:
        print("writing", flush=True)
`

// TestBackup_ConsistentWhileWritten copies a file another process
// keeps writing, in both journal modes, and one nobody else has open: the
// copy is one consistent snapshot (its rows a gap-free prefix of what was
// written, its pages sound), whatever the writes did meanwhile.
func TestBackup_ConsistentWhileWritten(t *testing.T) {
	old := pagesPerStep
	pagesPerStep = 16 // many steps, so that writes land between them
	t.Cleanup(func() { pagesPerStep = old })
	for _, c := range []struct {
		mode    string
		writer  bool
		methods []string
	}{
		{"wal", true, []string{"backup"}},
		{"delete", true, []string{"backup", "locked"}},
		{"delete", false, []string{"locked"}},
	} {
		t.Run(fmt.Sprintf("%s/writer=%v", c.mode, c.writer), func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			src := filepath.Join(dir, "live.db")
			w, err := db.OpenSQLite(ctx, src, db.Options{Create: true})
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range []string{"PRAGMA journal_mode = " + c.mode, "CREATE TABLE t (id INTEGER PRIMARY KEY, pad BLOB NOT NULL)",
				"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000) INSERT INTO t SELECT i, randomblob(1000) FROM n"} {
				if _, err := w.ExecContext(ctx, s); err != nil {
					t.Fatal(err)
				}
			}
			w.Close()
			if c.writer {
				cmd := exec.Command("python3", "-c", sqliteWriter, src, "2000")
				out, err := cmd.StdoutPipe()
				if err != nil {
					t.Fatal(err)
				}
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
				line, _ := bufio.NewReader(out).ReadString('\n')
				if line != "writing\n" {
					t.Fatalf("the writer: %q", line)
				}
			}
			var steps int
			before := liveMaxID(t, src)
			cp, err := Backup(ctx, src, filepath.Join(dir, "copy.db"), func(done, total int64) { steps++ })
			if err != nil {
				t.Fatal(err)
			}
			after := liveMaxID(t, src)
			if c.writer && after <= before {
				t.Fatalf("the writer wrote nothing while the copy was made (max id %d before, %d after)", before, after)
			}
			if !slices.Contains(c.methods, cp.Method) || cp.Bytes == 0 || steps < 1 {
				t.Errorf("copy %+v in %d steps", cp, steps)
			}
			d, err := db.OpenSQLite(ctx, filepath.Join(dir, "copy.db"), db.Options{ReadOnly: true})
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			var check string
			if err := d.QueryRowContext(ctx, "PRAGMA integrity_check").Scan(&check); err != nil || check != "ok" {
				t.Fatalf("integrity_check: %q %v", check, err)
			}
			var n, maxID int64
			if err := d.QueryRowContext(ctx, "SELECT count(*), max(id) FROM t").Scan(&n, &maxID); err != nil {
				t.Fatal(err)
			}
			// One snapshot: every row up to one point of the writer's
			// sequence, somewhere between the copy's start and end.
			if n != maxID || n < before || n > after {
				t.Errorf("the copy has %d rows up to id %d; the live table had up to id %d when the copy started, %d when it ended", n, maxID, before, after)
			}
			t.Logf("copied %d rows (%s); writers waited %d ms", n, cp.Method, cp.WritersWaitedMillis)
		})
	}
}

// liveMaxID reads the last id the writer committed to the live file.
func liveMaxID(t *testing.T, path string) int64 {
	t.Helper()
	d, err := db.OpenSQLite(context.Background(), path, db.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var id int64
	if err := d.QueryRowContext(context.Background(), "SELECT max(id) FROM t").Scan(&id); err != nil {
		t.Fatal(err)
	}
	return id
}
