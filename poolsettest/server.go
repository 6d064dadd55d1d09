package poolsettest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// server is the process side of a database server a test started, shared
// by Instance (mariadbd) and PGInstance (postgres): the run under way and
// the lock that serializes its starts, stops and signals. send signals the
// run (for PostgreSQL, the postmaster and its backends).
type server struct {
	name string
	send func(p *process, sig syscall.Signal) error

	life sync.Mutex // serializes Start, Stop, Kill, Pause and Resume
	mu   sync.Mutex // guards proc
	proc *process
}

// process is one run of the server. done is closed, after err is set, when
// the goroutine that waits for the process returns.
type process struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (s *server) current() *process {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proc
}

func (s *server) setCurrent(p *process) {
	s.mu.Lock()
	s.proc = p
	s.mu.Unlock()
}

// Pid returns the server's process id (PostgreSQL's postmaster), or 0 when
// it is not running: for signalling it by hand.
func (s *server) Pid() int {
	p := s.current()
	if p == nil || p.exited() {
		return 0
	}
	return p.cmd.Process.Pid
}

// Running reports whether the server has been started and has not exited.
func (s *server) Running() bool {
	p := s.current()
	return p != nil && !p.exited()
}

// stop sends sig (named sigName in the error), continues the server should
// it be paused (it takes the signal only then), and waits up to
// stopTimeout for it to exit; then it sends SIGKILL and says so. It is a
// no-op when the server is not running.
func (s *server) stop(sig syscall.Signal, sigName string) error {
	s.life.Lock()
	defer s.life.Unlock()
	p := s.current()
	if p == nil || p.exited() {
		return nil
	}
	if err := p.cmd.Process.Signal(sig); err != nil {
		if errors.Is(err, os.ErrProcessDone) {
			<-p.done
			return nil
		}
		return fmt.Errorf("poolsettest: stop %s: %w", s.name, err)
	}
	_ = s.send(p, sigCont)
	select {
	case <-p.done:
		return nil
	case <-time.After(stopTimeout):
	}
	_ = s.send(p, sigKill)
	<-p.done
	return fmt.Errorf("poolsettest: stop %s: no exit %v after %s; sent SIGKILL", s.name, stopTimeout, sigName)
}

// kill sends SIGKILL, as a crash would, and waits for the process to exit.
// It is a no-op when the server is not running.
func (s *server) kill() error {
	s.life.Lock()
	defer s.life.Unlock()
	p := s.current()
	if p == nil || p.exited() {
		return nil
	}
	if err := s.send(p, sigKill); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("poolsettest: kill %s: %w", s.name, err)
	}
	<-p.done
	return nil
}

// signal sends sig for op ("pause", "resume"); it fails when the server is
// not running.
func (s *server) signal(sig syscall.Signal, op string) error {
	s.life.Lock()
	defer s.life.Unlock()
	p := s.current()
	if p == nil || p.exited() {
		return fmt.Errorf("poolsettest: %s %s: not running", op, s.name)
	}
	if err := s.send(p, sig); err != nil {
		return fmt.Errorf("poolsettest: %s %s: %w", op, s.name, err)
	}
	return nil
}
