// Package pgcluster starts a throwaway PostgreSQL cluster with the initdb
// and pg_ctl found on PATH (or under /usr/lib/postgresql/*/bin): a new data
// directory under the system's temporary directory, listening on a free
// port of 127.0.0.1 only, trust authentication for the postgres role, UTF8
// and the C locale, durability off (fsync, full-page writes and
// synchronous commit), as the postgres user when run as root. Stop removes
// it. A cluster whose owner died without stopping it (killed, timed out)
// is stopped and removed by the next Start.
//
// It serves the tests (through internal/pgtest) and the benchmarks that
// need a server of their own; it links nothing of package testing.
package pgcluster

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// EnvURL names the variable that can hold the URL of an existing server
// (a role that may create databases), used instead of a throwaway cluster.
const EnvURL = "HSOPS_TEST_PG_URL"

// Cluster is a running throwaway cluster.
type Cluster struct {
	dir    string
	port   int
	pgCtl  string
	asUser *syscall.Credential
	// settings are the caller's server settings ("name=value").
	settings []string
}

// URL is the URL of a database of the cluster as the postgres role.
func (c *Cluster) URL(database string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.port, database)
}

// AdminURL is the URL of the postgres database, for creating others.
func (c *Cluster) AdminURL() string { return c.URL("postgres") }

func findBinary(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/" + name)
	if len(matches) > 0 {
		return matches[len(matches)-1], nil
	}
	return "", fmt.Errorf("%s not found on PATH or under /usr/lib/postgresql", name)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Start initialises and starts a cluster; settings are more server
// settings ("name=value"), after the cluster's own.
func Start(settings ...string) (*Cluster, error) {
	initdb, err := findBinary("initdb")
	if err != nil {
		return nil, err
	}
	pgCtl, err := findBinary("pg_ctl")
	if err != nil {
		return nil, err
	}
	reapOrphans(pgCtl)
	dir, err := os.MkdirTemp("", "hsops-pgtest-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{dir: dir, pgCtl: pgCtl, settings: settings}
	if err := c.start(initdb); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	return c, nil
}

func (c *Cluster) start(initdb string) error {
	// The owner's pid lets a later Start stop this cluster if this
	// process dies without stopping it (a timeout, SIGKILL).
	if err := os.WriteFile(filepath.Join(c.dir, "owner.pid"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return err
	}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return fmt.Errorf("running as root needs a postgres user to run the server: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		c.asUser = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(c.dir, uid, gid); err != nil {
			return err
		}
	}
	data := filepath.Join(c.dir, "data")
	if out, err := c.run(initdb, "-D", data, "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync"); err != nil {
		return fmt.Errorf("initdb: %v: %s", err, out)
	}
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freePort()
		if err != nil {
			return err
		}
		c.port = port
		opts := fmt.Sprintf("-c listen_addresses=127.0.0.1 -p %d -k %s -F -c synchronous_commit=off -c full_page_writes=off -c max_connections=300 -c shared_buffers=128MB", c.port, c.dir)
		for _, kv := range c.settings {
			opts += " -c " + kv
		}
		out, err := c.run(c.pgCtl, "-D", data, "-l", filepath.Join(c.dir, "server.log"), "-w", "-t", "60", "-o", opts, "start")
		if err == nil {
			return nil
		}
		log, _ := os.ReadFile(filepath.Join(c.dir, "server.log"))
		lastErr = fmt.Errorf("pg_ctl start: %v: %s %s", err, out, log)
	}
	return lastErr
}

func (c *Cluster) run(bin string, args ...string) ([]byte, error) {
	cmd := exec.Command(bin, args...)
	cmd.Dir = c.dir
	if c.asUser != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.asUser}
	}
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	return cmd.CombinedOutput()
}

// reapOrphans stops and removes the clusters of processes that died
// without stopping them.
func reapOrphans(pgCtl string) {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "hsops-pgtest-*"))
	for _, dir := range dirs {
		data, err := os.ReadFile(filepath.Join(dir, "owner.pid"))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
		if err != nil || pid <= 0 || syscall.Kill(pid, 0) == nil {
			continue
		}
		c := &Cluster{dir: dir, pgCtl: pgCtl}
		if fi, err := os.Stat(filepath.Join(dir, "data")); err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok && os.Geteuid() == 0 {
				c.asUser = &syscall.Credential{Uid: st.Uid, Gid: st.Gid}
			}
		}
		c.Stop()
	}
}

// Stop stops the cluster at once and removes its directory.
func (c *Cluster) Stop() {
	_, _ = c.run(c.pgCtl, "-D", filepath.Join(c.dir, "data"), "-m", "immediate", "-w", "stop")
	_ = os.RemoveAll(c.dir)
}
