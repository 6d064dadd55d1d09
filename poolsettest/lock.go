package poolsettest

import (
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// SharedServers names the lock that guards the machine's MariaDB and Redis
// servers, whose global counters (Threads_connected, Aborted_clients,
// connected_clients) some tests assert on. MySQLDSN and RedisURL hold it
// shared; such tests hold it exclusively with LockServer.
const SharedServers = "mariadb+redis"

// LockServer takes an exclusive, cross-process lock named for a shared
// server (such as SharedServers) until tb ends. Tests that assert on a
// server's global counters take it, and so do tests that disturb them
// (killing clients), so that the test binaries of different packages, which
// go test runs at once, do not blur each other's figures. Every test that
// uses the server holds the same lock shared (ShareServer), so the holder
// of the exclusive lock is alone on the server. It blocks until the lock is
// free; a waiting exclusive taker goes before later shared takers.
//
// A test that takes more than one such lock takes SharedServers first
// (its shared hold from MySQLDSN or RedisURL included), so that no two
// processes wait on each other in opposite orders.
//
// Within one test process the lock is reentrant: a test that holds it
// exclusively may take it again, shared or exclusively. Taking it
// exclusively while the process holds it only shared fails the test: take
// it first thing in the test. Tests that take it must not run in parallel
// (t.Parallel) with tests of the same process that use the servers.
func LockServer(tb testing.TB, name string) {
	tb.Helper()
	l := serverLockNamed(tb, name)
	l.lockExclusive(tb, name)
	tb.Cleanup(l.unlockExclusive)
}

// ShareServer takes the lock named name shared until tb ends, so that no
// test holding it exclusively (LockServer) runs meanwhile in any process.
// It blocks until no exclusive holder or waiter is left.
func ShareServer(tb testing.TB, name string) {
	tb.Helper()
	l := serverLockNamed(tb, name)
	l.lockShared(tb)
	tb.Cleanup(l.unlockShared)
}

// serverLock is a readers-writer lock between processes, built on two
// flock(2) files: main, held shared by users and exclusively by the writer,
// and turn, held by a writer while it waits for main so that new readers
// queue behind it. No holder of main ever waits for turn, so the two cannot
// deadlock. Counts make it reentrant within the process; they do not
// exclude goroutines of one process from each other.
type serverLock struct {
	mu         sync.Mutex
	main, turn *os.File
	shared     int // shared holds in this process
	exclusive  int // exclusive holds in this process
}

var (
	serverLocksMu sync.Mutex
	serverLocks   = map[string]*serverLock{}
)

func serverLockNamed(tb testing.TB, name string) *serverLock {
	tb.Helper()
	serverLocksMu.Lock()
	defer serverLocksMu.Unlock()
	if l, ok := serverLocks[name]; ok {
		return l
	}
	open := func(suffix string) *os.File {
		path := filepath.Join(os.TempDir(), "poolset-test-"+name+suffix+".lock")
		f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o666)
		if err != nil {
			tb.Fatalf("poolsettest: lock %s: %v", name, err)
		}
		return f
	}
	// The files stay open for the life of the process; flock locks are
	// released with them when it exits, however it exits.
	l := &serverLock{main: open(""), turn: open(".turn")}
	serverLocks[name] = l
	return l
}

func flock(tb testing.TB, f *os.File, how int) {
	tb.Helper()
	for {
		err := syscall.Flock(int(f.Fd()), how)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			tb.Fatalf("poolsettest: flock %s: %v", f.Name(), err)
		}
		return
	}
}

func (l *serverLock) lockShared(tb testing.TB) {
	tb.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.shared > 0 || l.exclusive > 0 {
		l.shared++
		return
	}
	flock(tb, l.turn, syscall.LOCK_EX)
	flock(tb, l.main, syscall.LOCK_SH)
	flock(tb, l.turn, syscall.LOCK_UN)
	l.shared++
}

func (l *serverLock) lockExclusive(tb testing.TB, name string) {
	tb.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.exclusive > 0 {
		l.exclusive++
		return
	}
	if l.shared > 0 {
		// Upgrading would have to let go of the lock first, and another
		// process's writer could run while this test's connections are
		// open.
		tb.Fatalf("poolsettest: LockServer(%q) after this test process took it shared (MySQLDSN, RedisURL or MySQLDatabase ran first): take it first thing in the test", name)
	}
	flock(tb, l.turn, syscall.LOCK_EX)
	flock(tb, l.main, syscall.LOCK_EX)
	flock(tb, l.turn, syscall.LOCK_UN)
	l.exclusive++
}

func (l *serverLock) unlockShared() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.shared--
	if l.shared == 0 && l.exclusive == 0 {
		syscall.Flock(int(l.main.Fd()), syscall.LOCK_UN)
	}
}

func (l *serverLock) unlockExclusive() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.exclusive--
	switch {
	case l.exclusive > 0:
	case l.shared > 0:
		// Downgrade: this process still has shared holders. The
		// conversion is not atomic; a waiting writer may slip in first,
		// and then this waits for it, holding nothing it could want.
		syscall.Flock(int(l.main.Fd()), syscall.LOCK_SH)
	default:
		syscall.Flock(int(l.main.Fd()), syscall.LOCK_UN)
	}
}

// Steady returns read's value once it has stayed the same over five reads
// 50 ms apart, or its last value after 5 s. Tests take their baselines of
// server-wide figures (Threads_connected, Aborted_clients, Redis
// connected_clients) with it: the server ends a closed connection's thread
// a moment after the client left, so a figure read just after an earlier
// test may still be falling.
func Steady(read func() int64) int64 {
	deadline := time.Now().Add(5 * time.Second)
	v, same := read(), 1
	for same < 5 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		if n := read(); n == v {
			same++
		} else {
			v, same = n, 1
		}
	}
	return v
}
