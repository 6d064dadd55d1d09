package postgres_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/poolset/poolset"
	"github.com/poolset/poolset/postgres"
)

// TestInterrupt cancels a running statement with Pool.Interrupt
// (pg_cancel_backend of the pool's own backends): the statement fails as
// interrupted, the same connection (backend PID) serves the next
// statement, and the server logs no client gone without a goodbye once
// the set is closed.
func TestInterrupt(t *testing.T) {
	ctx := context.Background()
	pair := standbyPair(t, 0)
	off := pair.Primary.LogSize()
	pc, err := postgres.Primary(pair.Primary.DSN("shop") + "&application_name=poolset-interrupt")
	if err != nil {
		t.Fatal(err)
	}
	pc.MaxOpen = 1
	set, err := poolset.Open(ctx, poolset.Config{Primary: pc})
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close(ctx)

	if n, err := set.Primary().Interrupt(ctx); n != 0 || err != nil {
		t.Fatalf("interrupt with nothing running: got %d, %v; want 0, nil", n, err)
	}
	h := set.Handle("orders")
	pid := func() int {
		t.Helper()
		var p int
		if err := h.QueryRowContext(ctx, "SELECT pg_backend_pid()").Scan(&p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pid0 := pid()
	if n, err := set.Primary().Interrupt(ctx); n != 0 || err != nil {
		t.Fatalf("interrupt with an idle connection: got %d, %v; want 0, nil", n, err)
	}

	for _, inTx := range []bool{false, true} {
		t.Run(fmt.Sprintf("in a transaction %v", inTx), func(t *testing.T) {
			failed := make(chan error, 1)
			go func() {
				if !inTx {
					_, err := h.ExecContext(ctx, "SELECT pg_sleep(60)")
					failed <- err
					return
				}
				tx, err := h.BeginTx(ctx, nil)
				if err != nil {
					failed <- err
					return
				}
				_, err = tx.ExecContext(ctx, "SELECT pg_sleep(60)")
				if rerr := tx.Rollback(); rerr != nil && err == nil {
					err = rerr
				}
				failed <- err
			}()
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
				if !postgres.IsInterrupted(err) || postgres.IsConnError(err) {
					t.Fatalf("the sleeping statement: got %v; want SQLSTATE 57014, not a connection error", err)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("the sleeping statement did not end after the interrupt")
			}
			if got := pid(); got != pid0 {
				t.Errorf("backend after the interrupt: got pid %d; want %d (the same connection)", got, pid0)
			}
		})
	}
	if err := set.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if lines := pair.Primary.AbruptDisconnects(off); len(lines) != 0 {
		t.Errorf("server log: got abrupt-disconnect lines %q; want none", lines)
	}
}
