package postgres_test

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/poolset/poolset"
	"github.com/poolset/poolset/poolsettest"
	"github.com/poolset/poolset/postgres"
)

// sessions counts the sessions of application app on the server of db.
func sessions(t *testing.T, db *sql.DB, app string) int {
	t.Helper()
	var n int
	if err := db.QueryRowContext(context.Background(), "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", app).Scan(&n); err != nil {
		t.Error(err)
	}
	return n
}

// TestServerSideSessions proves from the servers' side what a set does
// with its connections: while a load of writes and reads (under
// ReadYourWrites and plain) runs, the set's sessions in pg_stat_activity
// (by application_name) never exceed each pool's MaxOpen; after Close they
// are back to the baseline (none), and neither server logged a client gone
// without a goodbye. A connection dropped without one does leave such a
// line, so the check can fail.
func TestServerSideSessions(t *testing.T) {
	pair := standbyPair(t, 1)
	standby := pair.Standbys[0]
	const app = "poolset-serverside"
	servers := []*poolsettest.PGInstance{pair.Primary, standby}
	maxOpen := []int{4, 3}
	admins := make([]*sql.DB, len(servers))
	offsets := make([]int64, len(servers))
	for i, srv := range servers {
		admins[i] = openDB(t, srv.DSN("shop")+"&application_name=poolset-admin")
		offsets[i] = srv.LogSize()
		if n := sessions(t, admins[i], app); n != 0 {
			t.Fatalf("%s: %d sessions of %s before the set opens; want 0", srv.Name, n, app)
		}
	}
	set := openSet(t, pair, []*poolsettest.PGInstance{standby}, 0, func(c *poolset.Config) {
		for i, pc := range append([]*poolset.PoolConfig{&c.Primary}, &c.Reads[0]) {
			dsn := servers[i].DSN("shop") + "&application_name=" + app
			var err error
			if i == 0 {
				*pc, err = postgres.Primary(dsn)
			} else {
				*pc, err = postgres.Standby(dsn, 0)
				pc.Name = standby.Name
			}
			if err != nil {
				t.Fatal(err)
			}
			pc.MaxOpen = maxOpen[i]
		}
	})
	inRotation(t, set, standby.Name, true)

	// Sample the sessions while the load runs.
	peaks := make([]atomic.Int64, len(servers))
	stop := make(chan struct{})
	var sampler sync.WaitGroup
	for i := range servers {
		sampler.Go(func() {
			for {
				n := int64(sessions(t, admins[i], app))
				if n > peaks[i].Load() {
					peaks[i].Store(n)
				}
				select {
				case <-stop:
					return
				case <-time.After(2 * time.Millisecond):
				}
			}
		})
	}
	var wg sync.WaitGroup
	var failed atomic.Int64
	for w := range 8 {
		wg.Go(func() {
			h := set.Handle([]string{"users", "orders"}[w%2])
			rctx := poolset.ReadYourWrites(t.Context())
			for j := range 40 {
				id := 10000 + w*100 + j
				if _, err := h.ExecContext(rctx, "INSERT INTO users VALUES ($1, $2)", id, fmt.Sprintf("user-%d", id)); err != nil {
					failed.Add(1)
					t.Error(err)
					return
				}
				if _, err := readUser(rctx, h, id); err != nil {
					failed.Add(1)
					t.Errorf("read-your-writes read of user %d: %v", id, err)
					return
				}
				if _, err := readUser(t.Context(), h, j+1); err != nil {
					failed.Add(1)
					t.Errorf("read of user %d: %v", j+1, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	sampler.Wait()
	if failed.Load() > 0 {
		t.FailNow()
	}
	for i, srv := range servers {
		peak := peaks[i].Load()
		t.Logf("%s: at most %d sessions of the set while it ran (MaxOpen %d)", srv.Name, peak, maxOpen[i])
		if peak < 1 || peak > int64(maxOpen[i]) {
			t.Errorf("%s: peak sessions: got %d; want 1..%d (the pool's MaxOpen)", srv.Name, peak, maxOpen[i])
		}
	}
	t.Logf("before close:\n%s", set.Tree())

	if err := set.Close(t.Context()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for i, srv := range servers {
		eventually(t, srv.Name+" sessions back to the baseline", 10*time.Second, func() (bool, string) {
			n := sessions(t, admins[i], app)
			return n == 0, fmt.Sprintf("%d sessions", n)
		})
		if lines := srv.AbruptDisconnects(offsets[i]); len(lines) != 0 {
			t.Errorf("%s: server log after a clean close: got %d abrupt-disconnect lines; want none:\n%v", srv.Name, len(lines), lines)
		}
	}

	// A connection dropped without a goodbye: the same check sees it.
	off := pair.Primary.LogSize()
	c, err := pgconn.Connect(t.Context(), pair.Primary.DSN("shop")+"&application_name=poolset-dropped")
	if err != nil {
		t.Fatal(err)
	}
	c.Conn().Close() // the socket, not pgconn's Close, which says goodbye
	eventually(t, "an abrupt-disconnect line for a dropped connection", 10*time.Second, func() (bool, string) {
		lines := pair.Primary.AbruptDisconnects(off)
		return len(lines) == 1, fmt.Sprintf("%q", lines)
	})
}
