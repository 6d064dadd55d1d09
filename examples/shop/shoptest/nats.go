// Package shoptest holds the shop example's test helpers that the library's
// poolsettest does not: a nats-server process that a test can stop and
// start again. Only tests import it; no binary links it. Finding the
// machine's servers and starting MariaDB pairs are poolsettest's; the
// worker's in-memory broker and store are in package worker's tests.
package shoptest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/poolset/poolset/poolsettest"
)

// ServerProcess is a nats-server process with JetStream, started by
// StartServerProcess for tests that stop and restart a server under a
// client. Its methods are safe for concurrent use.
type ServerProcess struct {
	tb   testing.TB
	bin  string
	port int
	dir  string // JetStream store
	log  string // server log file

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// StartServerProcess starts a nats-server process (from PATH or
// /usr/sbin/nats-server) listening on 127.0.0.1 on a free port, with
// JetStream storing in a temporary directory, and waits until it accepts
// connections. It skips tb when no nats-server binary is found (fails when
// RequireServices is true) and stops the process when tb ends.
func StartServerProcess(tb testing.TB) *ServerProcess {
	tb.Helper()
	bin, err := exec.LookPath("nats-server")
	if err != nil {
		bin = "/usr/sbin/nats-server"
		if _, err := os.Stat(bin); err != nil {
			poolsettest.Skip(tb, "nats-server binary not found in PATH or at %s", bin)
			return nil
		}
	}
	port, err := poolsettest.FreePort()
	if err != nil {
		tb.Fatalf("poolsettest: %v", err)
	}
	dir := tb.TempDir()
	p := &ServerProcess{
		tb:   tb,
		bin:  bin,
		port: port,
		dir:  filepath.Join(dir, "jetstream"),
		log:  filepath.Join(dir, "nats-server.log"),
	}
	tb.Cleanup(p.Stop)
	p.Start()
	return p
}

// URL returns the server's client URL, nats://127.0.0.1:<port>. It stays
// the same across Stop and Start.
func (p *ServerProcess) URL() string {
	return "nats://127.0.0.1:" + strconv.Itoa(p.port)
}

// Start starts the server again after Stop, on the same port and store,
// and waits (at most 10s) until it accepts connections. It does nothing
// while the server runs.
func (p *ServerProcess) Start() {
	p.tb.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		return
	}
	cmd := exec.Command(p.bin,
		"-a", "127.0.0.1", "-p", strconv.Itoa(p.port),
		"-js", "-sd", p.dir, "-l", p.log)
	if err := cmd.Start(); err != nil {
		p.tb.Fatalf("poolsettest: start nats-server: %v", err)
	}
	done := make(chan struct{})
	go func() { // ends when the process exits; Stop waits for it
		cmd.Wait()
		close(done)
	}()
	p.cmd, p.done = cmd, done
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(p.port))
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-done:
			p.stopLocked()
			p.tb.Fatalf("poolsettest: nats-server exited at start: %s", p.logTail())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.stopLocked()
			p.tb.Fatalf("poolsettest: nats-server not accepting connections at %s after 10s: %v", addr, err)
		}
	}
}

// Stop stops the server with SIGTERM, as an operator would, and waits until
// the process has exited; after 10s it kills it. It is idempotent, and
// called when the test ends.
func (p *ServerProcess) Stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stopLocked()
}

func (p *ServerProcess) stopLocked() {
	if p.cmd == nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
	p.cmd, p.done = nil, nil
}

func (p *ServerProcess) logTail() string {
	b, err := os.ReadFile(p.log)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}
