package mysql_test

import (
	"context"
	"database/sql"
	"errors"
	"net"
	"testing"
	"time"

	gomysql "github.com/go-sql-driver/mysql"

	"github.com/poolset/poolset"
	"github.com/poolset/poolset/mysql"
	"github.com/poolset/poolset/poolsettest"
)

// TestInterrupt ends a statement that waits on a row lock with
// Pool.Interrupt: the statement fails as interrupted, its transaction rolls
// back, its connection serves the next statement, and the server counts no
// aborted client once the set is released.
func TestInterrupt(t *testing.T) {
	ctx := context.Background()
	poolsettest.LockServer(t, poolsettest.SharedServers)
	dsn := poolsettest.MySQLDatabase(t, "poolset_t_interrupt")
	admin, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	aborted := func() int64 {
		n, err := mysql.GlobalStatus(ctx, admin, "Aborted_clients")
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	aborted0 := poolsettest.Steady(aborted)
	if _, err := admin.ExecContext(ctx, "CREATE TABLE t (id INT PRIMARY KEY, v INT)"); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.ExecContext(ctx, "INSERT INTO t VALUES (1, 0)"); err != nil {
		t.Fatal(err)
	}

	pc, err := mysql.Primary(dsn)
	if err != nil {
		t.Fatal(err)
	}
	pc.MaxOpen = 2
	set, err := poolset.Open(ctx, poolset.Config{Primary: pc})
	if err != nil {
		t.Fatal(err)
	}
	released := false
	defer func() {
		if !released {
			set.Close(ctx)
		}
	}()

	// Nothing runs: nothing to interrupt.
	if n, err := set.Primary().Interrupt(ctx); n != 0 || err != nil {
		t.Fatalf("interrupt with nothing running: got %d, %v; want 0, nil", n, err)
	}

	// Another session holds the row.
	locker, err := admin.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer locker.Rollback()
	if _, err := locker.ExecContext(ctx, "UPDATE t SET v = v + 1 WHERE id = 1"); err != nil {
		t.Fatal(err)
	}

	h := set.Handle("orders")
	failed := make(chan error, 1)
	go func() {
		tx, err := h.BeginTx(ctx, nil)
		if err != nil {
			failed <- err
			return
		}
		_, err = tx.ExecContext(ctx, "UPDATE t SET v = v + 10 WHERE id = 1")
		if rerr := tx.Rollback(); rerr != nil && err == nil {
			err = rerr
		}
		failed <- err
	}()
	// Interrupt until the waiting statement is seen and ended.
	var ended int
	for i := 0; ended == 0 && i < 500; i++ {
		n, err := set.Primary().Interrupt(ctx)
		if err != nil {
			t.Fatalf("interrupt: %v", err)
		}
		ended += n
		if ended == 0 {
			time.Sleep(10 * time.Millisecond)
		}
	}
	if ended != 1 {
		t.Fatalf("interrupted %d statements; want 1", ended)
	}
	select {
	case err := <-failed:
		var me *gomysql.MySQLError
		if !mysql.IsInterrupted(err) || !errors.As(err, &me) {
			t.Fatalf("the waiting statement: got %v; want the server's interrupted error", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the waiting statement did not end after the interrupt")
	}
	if err := locker.Rollback(); err != nil {
		t.Fatal(err)
	}
	// The interrupted statement's connection serves the next one.
	if _, err := h.ExecContext(ctx, "UPDATE t SET v = v + 100 WHERE id = 1"); err != nil {
		t.Fatalf("a statement after the interrupt: %v", err)
	}
	var v int
	if err := admin.QueryRowContext(ctx, "SELECT v FROM t WHERE id = 1").Scan(&v); err != nil || v != 100 {
		t.Fatalf("v: got %d, %v; want 100 (the interrupted update rolled back)", v, err)
	}
	if st := set.Stats()[0]; st.Open < 1 {
		t.Errorf("open connections: got %d; want the pool's connections kept", st.Open)
	}
	released = true
	if err := set.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if got := poolsettest.Steady(aborted); got != aborted0 {
		t.Errorf("Aborted_clients: got %d; want %d (unchanged)", got, aborted0)
	}
}

// TestPoolConfigInterrupt: a DSN on tcp gets Interrupt; one that dials
// through a network registered with the driver keeps its own dialling and
// gets none.
func TestPoolConfigInterrupt(t *testing.T) {
	pc, err := mysql.Primary("root@tcp(127.0.0.1:1)/db?timeout=1s&readTimeout=2s&writeTimeout=3s")
	if err != nil {
		t.Fatal(err)
	}
	if pc.Interrupt == nil {
		t.Error("tcp: Interrupt: got nil; want set")
	}
	gomysql.RegisterDialContext("poolset-test-net", func(ctx context.Context, addr string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	})
	pc, err = mysql.Primary("root@poolset-test-net(127.0.0.1:1)/db")
	if err != nil {
		t.Fatal(err)
	}
	if pc.Interrupt != nil {
		t.Error("registered network: Interrupt: got set; want nil")
	}
}
