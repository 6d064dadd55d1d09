package poolsettest

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"testing"
	"time"
)

// TestLockHelperProcess is not a test: lockHolder runs the test binary with
// it to hold a lock from another process until its stdin closes.
func TestLockHelperProcess(t *testing.T) {
	name, mode := os.Getenv("POOLSET_LOCK_HELPER"), os.Getenv("POOLSET_LOCK_HELPER_MODE")
	if name == "" {
		t.Skip("helper process only")
	}
	if mode == "exclusive" {
		LockServer(t, name)
	} else {
		ShareServer(t, name)
	}
	os.Stdout.WriteString("held\n")
	io.Copy(io.Discard, os.Stdin)
}

// lockHolder starts a process that takes the lock name in mode. held is
// closed once it holds it; release makes it let go and waits for it.
func lockHolder(t *testing.T, name, mode string) (held <-chan struct{}, release func()) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestLockHelperProcess$")
	cmd.Env = append(os.Environ(), "POOLSET_LOCK_HELPER="+name, "POOLSET_LOCK_HELPER_MODE="+mode)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if sc.Text() == "held" {
				close(h)
				break
			}
		}
		io.Copy(io.Discard, stdout)
	}()
	var done bool
	release = func() {
		if done {
			return
		}
		done = true
		stdin.Close()
		cmd.Wait()
	}
	t.Cleanup(release)
	return h, release
}

func waitFor(t *testing.T, what string, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(30 * time.Second):
		t.Fatalf("%s: not after 30 s", what)
	}
}

// notYet reports whether ch stays open for a moment. A lock that is wrongly
// free closes it at once, so the test fails rather than passes by luck.
func notYet(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return false
	case <-time.After(300 * time.Millisecond):
		return true
	}
}

func TestServerLockExcludesAcrossProcesses(t *testing.T) {
	name := "locktest-" + t.Name() + "-" + time.Now().Format("150405.000000")
	t.Cleanup(func() {
		os.Remove(serverLockNamed(t, name).main.Name())
		os.Remove(serverLockNamed(t, name).turn.Name())
	})

	// Two readers in other processes share the lock.
	held1, release1 := lockHolder(t, name, "shared")
	waitFor(t, "first reader", held1)
	held2, release2 := lockHolder(t, name, "shared")
	waitFor(t, "second reader, alongside the first", held2)

	// A writer (this process) waits for both readers.
	l := serverLockNamed(t, name)
	writer := make(chan struct{})
	go func() {
		l.lockExclusive(t, name)
		close(writer)
	}()
	if !notYet(writer) {
		t.Fatal("writer got the lock while readers held it")
	}
	// A reader that comes while the writer waits queues behind it.
	held3, release3 := lockHolder(t, name, "shared")
	release1()
	if !notYet(writer) {
		t.Fatal("writer got the lock while a reader still held it")
	}
	release2()
	waitFor(t, "writer, once the readers let go", writer)
	if !notYet(held3) {
		t.Fatal("a reader got the lock while the writer held it")
	}
	l.unlockExclusive()
	waitFor(t, "queued reader, once the writer let go", held3)
	release3()
}

// TestServerLockReentrant: a test that holds the lock exclusively can take
// it again, shared (MySQLDSN does) or exclusively, without deadlock.
func TestServerLockReentrant(t *testing.T) {
	name := "locktest-" + t.Name() + "-" + time.Now().Format("150405.000000")
	t.Run("exclusive then shared", func(t *testing.T) {
		LockServer(t, name)
		ShareServer(t, name)
		LockServer(t, name)
		ShareServer(t, name)
	})
	l := serverLockNamed(t, name)
	if l.shared != 0 || l.exclusive != 0 {
		t.Fatalf("after the subtest: shared %d, exclusive %d; want 0, 0", l.shared, l.exclusive)
	}
	// Released: another process can take it exclusively.
	held, release := lockHolder(t, name, "exclusive")
	waitFor(t, "another process, once released", held)
	release()
	os.Remove(l.main.Name())
	os.Remove(l.turn.Name())
}
