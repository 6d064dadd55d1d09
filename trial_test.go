package poolset_test

import (
	"context"
	"database/sql"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/poolset/poolset"
	"github.com/poolset/poolset/mysql"
	"github.com/poolset/poolset/poolsettest"
	"github.com/poolset/poolset/release"
)

// The findings of a trial run as a new user would (issue 8, point 6), each
// with the test that failed before its fix.

func TestPingAfterRelease(t *testing.T) {
	ctx := context.Background()
	s := openSQLite(t, poolset.Config{})
	if err := s.Handle("users").PingContext(ctx); err != nil {
		t.Fatalf("ping: %v", err)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Handle("users").PingContext(ctx); !errors.Is(err, poolset.ErrPoolClosed) {
		t.Errorf("ping after close: got %v; want ErrPoolClosed", err)
	}
}

func TestReadYourWritesCountsOnlyReadsAfterAWrite(t *testing.T) {
	ctx := poolset.ReadYourWrites(context.Background())
	s := openSQLite(t, poolset.Config{})
	var one int
	if err := s.Handle("users").Read().QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		t.Fatal(err)
	}
	for _, p := range s.Stats() {
		for _, r := range p.Repos {
			if r.ReadYourWritesReplica != 0 || r.ReadYourWritesPrimary != 0 {
				t.Errorf("pool %s repo %s: got read-your-writes served %d, to primary %d; want 0, 0 (no write came before the read)",
					p.Name, r.Repo, r.ReadYourWritesReplica, r.ReadYourWritesPrimary)
			}
		}
	}
}

func TestHandleNameRequired(t *testing.T) {
	s := openSQLite(t, poolset.Config{})
	mustPanic(t, `Handle("")`, func() { s.Handle("") })
	s.HandleWithPolicy("users", poolset.FailWithoutReadPool)
	mustPanic(t, "the same handle with another policy", func() { s.HandleWithPolicy("users", poolset.FallbackToPrimary) })
}

func mustPanic(t *testing.T, what string, f func()) {
	t.Helper()
	defer func() {
		if recover() == nil {
			t.Errorf("%s: got no panic; want one", what)
		}
	}()
	f()
}

// TestWriteThroughReaderFailsWithoutReadPools: a write sent through a
// Reader fails in a set without read pools (development) as it does in one
// with them (production), and writes nothing.
func TestWriteThroughReaderFailsWithoutReadPools(t *testing.T) {
	ctx := context.Background()
	primary, _, dsn := mariaDBConfigs(t, "poolset_t_reader_write")
	s := mustOpen(t, poolset.Config{Primary: primary})
	h := s.Handle("users")
	if _, err := h.ExecContext(ctx, "CREATE TABLE w (id INT PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	rows, err := h.Read().QueryContext(ctx, "INSERT INTO w VALUES (1)")
	if err == nil {
		for rows.Next() {
		}
		err = rows.Err()
		rows.Close()
	}
	if !mysql.IsReadOnly(err) {
		t.Errorf("insert through a Reader: got %v; want the server's read-only error", err)
	}
	var n int
	if err := h.QueryRowContext(ctx, "SELECT COUNT(*) FROM w").Scan(&n); err != nil || n != 0 {
		t.Errorf("rows in w: got %d, %v; want 0 (nothing written) [%s]", n, err, poolset.Redact(dsn))
	}
}

// TestReleaseWithCancelledContext: a service's release given a context
// that is already cancelled (its signal context) still closes the set's
// idle connections with a goodbye before it returns: the pools' step is
// not cut, Close returns with every connection closed, and the server
// counts no aborted client.
func TestReleaseWithCancelledContext(t *testing.T) {
	poolsettest.LockServer(t, poolsettest.SharedServers)
	admin := adminDB(t)
	aborted0 := poolsettest.Steady(func() int64 { return status(t, admin, "Aborted_clients") })
	primary, _, _ := mariaDBConfigs(t, "poolset_t_cancelled_release")
	primary.MaxOpen = 9
	s, err := poolset.Open(context.Background(), poolset.Config{Primary: primary})
	if err != nil {
		t.Fatal(err)
	}
	// Nine connections open and idle.
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range 9 {
		wg.Go(func() {
			tx, err := s.Handle("orders").BeginTx(context.Background(), nil)
			if err != nil {
				t.Error(err)
				return
			}
			<-start
			tx.Rollback()
		})
	}
	eventuallyTrue(t, "nine connections in use", func() bool { return s.Stats()[0].InUse == 9 })
	close(start)
	wg.Wait()
	if open := s.Stats()[0].Open; open != 9 {
		t.Fatalf("open connections: got %d; want 9", open)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var rel release.Stack
	rel.AddTimeout("pools", s.CloseTimeout(), s.Close)
	report, _ := rel.Release(ctx)
	if st := report.Steps[0]; st.Outcome != release.OK {
		t.Errorf("step %s: got %s (%v); want ok: the idle connections closed before Close returns\n%s", st.Name, st.Outcome, st.Err, report)
	}
	if st := s.Stats()[0]; st.Open != 0 || !st.Closed {
		t.Errorf("after close: got open %d, closed %v; want the idle connections closed before Close returns", st.Open, st.Closed)
	}
	if got := poolsettest.Steady(func() int64 { return status(t, admin, "Aborted_clients") }); got != aborted0 {
		t.Errorf("Aborted_clients: got %d; want %d (unchanged)", got, aborted0)
	}
}

// TestOpenServerThatDoesNotAnswer: a server that accepts the connection and
// never answers makes Open fail saying what did not answer, and in how long.
func TestOpenServerThatDoesNotAnswer(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var conns []net.Conn
	var mu sync.Mutex
	go func() { // ends when l closes
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	defer func() {
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	}()
	pc, err := mysql.Primary("app:s3cret@tcp(" + l.Addr().String() + ")/shop")
	if err != nil {
		t.Fatal(err)
	}
	pc.AcquireTimeout = 300e6 // 300 ms: the ping's bound
	_, err = poolset.Open(context.Background(), poolset.Config{Primary: pc})
	if err == nil || !strings.Contains(err.Error(), "did not answer within 300ms") || !strings.Contains(err.Error(), l.Addr().String()) ||
		strings.Contains(err.Error(), "s3cret") {
		t.Errorf("Open: got %v; want the server that did not answer and the time, no password", err)
	}
}

// TestLeakEveryKind: a *sql.Rows, *sql.Tx, *sql.Stmt and *sql.Conn, each
// left open by a repository of its own: the leak watch names each with its
// repository and the function that took it; release lists and closes them,
// and the server counts no aborted client.
func TestLeakEveryKind(t *testing.T) {
	ctx := context.Background()
	poolsettest.LockServer(t, poolsettest.SharedServers)
	admin := adminDB(t)
	aborted0 := poolsettest.Steady(func() int64 { return status(t, admin, "Aborted_clients") })
	log, logs := newLogger()
	primary, _, _ := mariaDBConfigs(t, "poolset_t_leak_kinds")
	s, err := poolset.Open(ctx, poolset.Config{Primary: primary, LeakThreshold: 50e6, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	rows, tx, st, conn := leakEveryKind(t, s)
	_, _, _, _ = rows, tx, st, conn
	want := []string{"repo=rows-repo kind=rows", "repo=tx-repo kind=tx", "repo=stmt-repo kind=stmt", "repo=conn-repo kind=conn", "leakEveryKind"}
	eventuallyTrue(t, "every leak logged", func() bool {
		out := logs.String()
		for _, w := range want {
			if !strings.Contains(out, w) {
				return false
			}
		}
		return true
	})
	err = s.Close(ctx)
	if err == nil || !strings.Contains(err.Error(), "4 still held at close") {
		t.Errorf("close: got %v; want the four listed", err)
	}
	if err := tx.Commit(); !errors.Is(err, poolset.ErrPoolClosed) {
		t.Errorf("commit of a transaction closed at close: got %v; want ErrPoolClosed", err)
	}
	rows.Close()
	st.Close()
	conn.Close()
	if got := poolsettest.Steady(func() int64 { return status(t, admin, "Aborted_clients") }); got != aborted0 {
		t.Errorf("Aborted_clients: got %d; want %d (unchanged)", got, aborted0)
	}
}

func leakEveryKind(t *testing.T, s *poolset.Set) (*sql.Rows, *sql.Tx, *sql.Stmt, *sql.Conn) {
	ctx := context.Background()
	rows, err := s.Handle("rows-repo").QueryContext(ctx, "SELECT 1")
	if err != nil {
		t.Fatal(err)
	}
	tx, err := s.Handle("tx-repo").BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	st, err := s.Handle("stmt-repo").PrepareContext(ctx, "SELECT ?")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := s.Handle("conn-repo").Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return rows, tx, st, conn
}
