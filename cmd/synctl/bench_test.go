package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func freePort(b *testing.B) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// BenchmarkSynctl measures `synctl start` until every process answers
// /health, and `synctl stop` until every process has exited, for the main
// process alone and for the main process with four workers (SQLite). Run:
//
//	go test ./cmd/synctl -run XXX -bench Synctl -benchtime 10x
func BenchmarkSynctl(b *testing.B) {
	for _, workers := range []int{0, 4} {
		b.Run(fmt.Sprintf("main+%dworkers", workers), func(b *testing.B) {
			dir := b.TempDir()
			hs := filepath.Join(dir, "hs.yaml")
			write := func(p, s string) {
				if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
					b.Fatal(err)
				}
			}
			write(hs, fmt.Sprintf(`server_name: example.org
pid_file: %[1]s/main.pid
listeners:
  - port: %[2]d
    type: http
    bind_addresses: ['127.0.0.1']
database:
  name: sqlite3
  args:
    database: %[1]s/homeserver.db
`, dir, freePort(b)))
			args := []string{"start", hs}
			if workers > 0 {
				wd := filepath.Join(dir, "workers")
				if err := os.Mkdir(wd, 0o700); err != nil {
					b.Fatal(err)
				}
				write(filepath.Join(wd, "main.yaml"), "worker_app: synapse.app.homeserver\n")
				for i := 1; i <= workers; i++ {
					write(filepath.Join(wd, fmt.Sprintf("w%d.yaml", i)), fmt.Sprintf(`worker_app: synapse.app.generic_worker
worker_name: w%[1]d
worker_pid_file: %[2]s/w%[1]d.pid
worker_listeners:
  - port: %[3]d
    type: http
    bind_addresses: ['127.0.0.1']
`, i, dir, freePort(b)))
				}
				args = []string{"-a", wd, "start", hs}
			}
			stopArgs := append([]string{}, args...)
			stopArgs[len(stopArgs)-2] = "stop"
			// The first start creates the database; it is not measured.
			if code := run(args, io.Discard, io.Discard); code != 0 {
				b.Fatalf("synctl start: exit %d", code)
			}
			if code := run(stopArgs, io.Discard, io.Discard); code != 0 {
				b.Fatalf("synctl stop: exit %d", code)
			}
			var startTotal, stopTotal time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				t0 := time.Now()
				if code := run(args, io.Discard, io.Discard); code != 0 {
					b.Fatalf("synctl start: exit %d", code)
				}
				t1 := time.Now()
				if code := run(stopArgs, io.Discard, io.Discard); code != 0 {
					b.Fatalf("synctl stop: exit %d", code)
				}
				startTotal += t1.Sub(t0)
				stopTotal += time.Since(t1)
			}
			b.ReportMetric(float64(startTotal.Milliseconds())/float64(b.N), "start-ms")
			b.ReportMetric(float64(stopTotal.Milliseconds())/float64(b.N), "stop-ms")
		})
	}
}
