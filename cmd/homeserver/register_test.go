package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"hsops/internal/config"
	"hsops/internal/server"
)

// pty is a pseudo-terminal: the test reads and writes the master, the
// command gets the slave as its terminal.
type pty struct {
	master, slave *os.File
	mu            sync.Mutex
	out           bytes.Buffer
}

func openPTY(t *testing.T) *pty {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	fd := int(master.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	slave, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	p := &pty{master: master, slave: slave}
	go func() {
		buf := make([]byte, 1024)
		for {
			n, err := master.Read(buf)
			p.mu.Lock()
			p.out.Write(buf[:n])
			p.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() { slave.Close(); master.Close() })
	return p
}

func (p *pty) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// answer waits for the prompt, then for the terminal's echo to be off,
// then types the line. (The two prompts differ: "Password: " and "Confirm
// password: ".)
func (p *pty) answer(t *testing.T, prompt, line string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(p.output(), prompt) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q prompt; the terminal shows %q", prompt, p.output())
		}
		time.Sleep(10 * time.Millisecond)
	}
	for {
		tio, err := unix.IoctlGetTermios(int(p.slave.Fd()), unix.TCGETS)
		if err != nil {
			t.Fatal(err)
		}
		if tio.Lflag&unix.ECHO == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the %q prompt does not turn the echo off", prompt)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := p.master.WriteString(line + "\n"); err != nil {
		t.Fatal(err)
	}
}

// TestRegisterUser_PromptsOnTerminal: without --password or
// HSOPS_PASSWORD, register-user on a terminal asks for the password twice
// without echo, as Synapse's register_new_matrix_user does.
func TestRegisterUser_PromptsOnTerminal(t *testing.T) {
	dir := t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	yaml := fmt.Sprintf(`server_name: example.org
registration_shared_secret: "s3cret"
bcrypt_rounds: 4
listeners:
  - port: %d
    type: http
    bind_addresses: ['127.0.0.1']
database:
  name: sqlite3
  args:
    database: %s
`, port, filepath.Join(dir, "hs.db"))
	cfgPath := filepath.Join(dir, "hs.yaml")
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.Start(ctx, server.Options{Config: cfg, Log: server.NewLogger(&bytes.Buffer{}, "test")})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx) }()
	t.Cleanup(func() { cancel(); <-served })

	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	register := func(user string, answers ...string) (string, string, int) {
		p := openPTY(t)
		cmd := exec.Command(exe, "register-user", "-c", cfgPath, "--user", user)
		cmd.Args[0] = "homeserver"
		cmd.Env = append(os.Environ(), "HSOPS_PASSWORD=")
		var stdout bytes.Buffer
		cmd.Stdin, cmd.Stdout, cmd.Stderr = p.slave, &stdout, p.slave
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		prompts := []string{"Password: ", "Confirm password: "}
		for i, a := range answers {
			p.answer(t, prompts[i], a)
		}
		_ = cmd.Wait()
		time.Sleep(50 * time.Millisecond) // the last of the terminal's output
		return stdout.String(), p.output(), cmd.ProcessState.ExitCode()
	}

	stdout, term, code := register("alice", "correct horse", "correct horse")
	if code != 0 || !strings.Contains(stdout, "registered @alice:example.org") {
		t.Fatalf("exit %d, stdout %q, terminal %q", code, stdout, term)
	}
	if strings.Contains(term, "correct horse") {
		t.Errorf("the password was echoed: %q", term)
	}
	if !strings.Contains(term, "Password: ") || !strings.Contains(term, "Confirm password: ") {
		t.Errorf("terminal %q lacks the two prompts", term)
	}

	_, term, code = register("bob", "one", "two")
	if code != 2 || !strings.Contains(term, "homeserver: error: the passwords do not match") {
		t.Errorf("passwords that differ: exit %d, terminal %q", code, term)
	}
}
