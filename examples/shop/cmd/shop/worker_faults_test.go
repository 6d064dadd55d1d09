package main

import (
	"database/sql"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/poolset/poolset/mysql"
	"github.com/poolset/poolset/poolsettest"
)

// lockProducts locks every product row of d in a transaction of its own,
// rolled back when t ends unless the caller rolls it back first, so that
// the worker's order transactions wait on the locks.
func lockProducts(t *testing.T, d shopDB) *sql.Tx {
	t.Helper()
	db, err := sql.Open("mysql", d.dsn) // d.admin may have one connection only
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	tx, err := db.BeginTx(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tx.Rollback() })
	rows, err := tx.QueryContext(t.Context(), "SELECT id FROM `"+d.name+"`.products FOR UPDATE")
	if err != nil {
		t.Fatal(err)
	}
	rows.Close()
	return tx
}

// waitLockingReads waits until the worker's transactions wait on the
// product locks, and fails t if the worker exits first or after 30 s.
func waitLockingReads(t *testing.T, d shopDB, w *workerProc) int {
	t.Helper()
	waiting := 0
	if !eventually(30*time.Second, func() bool {
		waiting = lockingReads(t, d)
		return waiting > 0 || w.exited()
	}) || w.exited() {
		t.Fatalf("locking reads waiting in %s: got %d; want the worker's\n%s", d.name, waiting, tail(w.stderr.String(), 20))
	}
	return waiting
}

// starveFor is how long TestWorkerPoolStarvation holds the product rows:
// longer than the pool's acquire timeout (5 s), so that the orders waiting
// for the pool's one connection meet it.
const starveFor = 7 * time.Second

// TestWorkerPoolStarvation: a pool of one connection, 16 orders in flight,
// and every product row locked by another session for longer than the
// acquire timeout. The orders waiting for the connection meet the acquire
// timeout on a live database: they are run again without a nak, spending
// no delivery (--max-deliver 1 would dead-letter at the first nak), and
// the keeper extends them past a 1 s ack wait (NATS would hand them out
// again otherwise). Nothing is dead-lettered, each message is received
// once, every order is stored once.
func TestWorkerPoolStarvation(t *testing.T) {
	for _, kind := range workerBrokers {
		t.Run(kind, func(t *testing.T) {
			const n = 200
			b := setupBroker(t, kind)
			d := newShopDB(t, "poolset_t_starve_"+kind)
			seedShop(t, d)
			loadOrders(t, b, n)
			lock := lockProducts(t, d)

			w := startWorker(t, d, b, "--max-open", "1", "--concurrency", "16", "--group", "1",
				"--ack-wait", "1s", "--max-deliver", "1", "--exit-when-idle", "3s")
			waitLockingReads(t, d, w)
			time.Sleep(starveFor)
			if err := lock.Rollback(); err != nil {
				t.Fatal(err)
			}

			s := wantCleanExit(t, "worker", w)
			ws := s.Worker
			if ws.DeadLettered != 0 || ws.Dropped != 0 || ws.Naked != 0 || ws.SettleErrors != 0 {
				t.Errorf("dead-lettered, dropped, nak'ed, settle errors: got %d, %d, %d, %d; want 0 (a busy pool is not the messages' fault)",
					ws.DeadLettered, ws.Dropped, ws.Naked, ws.SettleErrors)
			}
			if ws.BusyRetries == 0 {
				t.Errorf("busy retries: got 0; want the orders that met the acquire timeout run again")
			}
			if ws.Received != n || ws.Duplicates != 0 {
				t.Errorf("received, duplicates: got %d, %d; want %d, 0 (each message delivered once)", ws.Received, ws.Duplicates, n)
			}
			if kind == "nats" && ws.Extended == 0 {
				t.Errorf("extended: got 0; want the waiting messages extended past the 1 s ack wait")
			}
			verifyOrders(t, d, n)
		})
	}
}

// TestWorkerHungDatabase: the worker's database is stopped with SIGSTOP
// (the kernel still accepts TCP connections; nothing answers). At start the
// worker says what does not answer and exits 1. Mid-run, with statements
// hanging and none failing, the watchdog's ping does not answer: an outage,
// with /readyz 503, the messages held and extended past the ack wait; after
// SIGCONT every order is stored once, each message received once.
func TestWorkerHungDatabase(t *testing.T) {
	b := setupBroker(t, "nats")
	db, d := outageDB(t)
	seedShop(t, d)

	t.Run("at start", func(t *testing.T) {
		if err := db.Pause(); err != nil {
			t.Fatal(err)
		}
		w := startWorker(t, d, b, "--exit-when-idle", "1s")
		r := w.wait()
		if err := db.Resume(); err != nil {
			t.Fatal(err)
		}
		if r.code != exitRuntime || !strings.Contains(r.stderr, "did not answer within") || !strings.Contains(r.stderr, "127.0.0.1:") {
			t.Fatalf("worker on a stopped database: got exit code %d; want %d and a message naming the server that did not answer\nstderr:\n%s",
				r.code, exitRuntime, tail(r.stderr, 20))
		}
		t.Logf("worker on a stopped database: %s", strings.TrimSpace(tail(r.stderr, 1)))
	})

	t.Run("mid-run", func(t *testing.T) {
		down, n := outageSize(t)
		loadOrders(t, b, n)
		admin := freeAddr(t)
		w := startWorker(t, d, b, "--group", "1", "--concurrency", "4", "--exit-when-idle", "5s",
			"--ack-wait", outageAckWait, "--admin", admin)
		at := waitOrders(t, d, w, n*3/10)
		if err := db.Pause(); err != nil {
			t.Fatal(err)
		}
		client := &http.Client{Timeout: time.Second}
		var code int
		var body string
		unready := eventually(down+10*time.Second, func() bool {
			code, body = httpGet(client, "http://"+admin+"/readyz")
			return code == http.StatusServiceUnavailable
		})
		time.Sleep(down)
		if err := db.Resume(); err != nil {
			t.Fatal(err)
		}
		t.Logf("mariadbd stopped at %d of %d orders stored, continued %v after /readyz failed", at, n, down)
		if !unready || !strings.Contains(body, "database") {
			t.Errorf("/readyz while the database hangs: got %d %q; want 503 naming the database", code, body)
		}
		s := wantCleanExit(t, "worker", w)
		if s.Worker.StallPings == 0 {
			t.Errorf("stall pings: got 0; want the watchdog's")
		}
		// Nothing was cut: no commit in doubt, no duplicate.
		wantHeldThrough(t, s.Worker, n, 0)
		verifyOrders(t, d, n)
	})
}

// TestWorkerDrainCutInterrupts: groups of orders wait on product row locks
// when the drain is cut short, by its deadline or by a second signal. The
// worker exits 3 having interrupted the waiting statements on the server
// (KILL QUERY) instead of cutting their connections: the server counts no
// aborted client, and a second worker stores every order once.
func TestWorkerDrainCutInterrupts(t *testing.T) {
	for _, how := range []string{"deadline", "second signal"} {
		t.Run(how, func(t *testing.T) {
			b := setupBroker(t, "nats")
			_, d := outageDB(t) // a server of the test's own: its Aborted_clients is the worker's
			seedShop(t, d)
			loadOrders(t, b, wkOrders)
			aborted := func() int64 {
				v, err := mysql.GlobalStatus(t.Context(), d.admin, "Aborted_clients")
				if err != nil {
					t.Fatal(err)
				}
				return v
			}
			aborted0 := poolsettest.Steady(aborted)
			lock := lockProducts(t, d)

			args := []string{"--group", "100", "--drain-timeout", "1s"}
			if how == "second signal" {
				args = []string{"--group", "100", "--drain-timeout", "1m"}
			}
			w := startWorker(t, d, b, args...)
			waiting := waitLockingReads(t, d, w)
			w.signal(syscall.SIGTERM)
			if how == "second signal" {
				time.Sleep(200 * time.Millisecond)
				w.signal(syscall.SIGINT)
			}
			r, s := w.summary()
			if r.code != exitAbandoned {
				t.Fatalf("exit code: got %d; want %d (abandoned)\nstderr:\n%s", r.code, exitAbandoned, tail(r.stderr, 30))
			}
			ws := s.Worker
			t.Logf("%d group transactions waiting on the locks; worker: %+v", waiting, ws)
			if ws.Interrupted == 0 || ws.Abandoned == 0 || ws.DeadLettered != 0 {
				t.Errorf("interrupted, abandoned, dead-lettered: got %d, %d, %d; want >0, >0, 0", ws.Interrupted, ws.Abandoned, ws.DeadLettered)
			}
			if err := lock.Rollback(); err != nil {
				t.Fatal(err)
			}
			if got := poolsettest.Steady(aborted); got != aborted0 {
				t.Errorf("Aborted_clients: got %d; want %d (unchanged: no connection cut)", got, aborted0)
			}

			w2 := startWorker(t, d, b, "--exit-when-idle", "3s")
			s2 := wantCleanExit(t, "second worker", w2)
			if s2.Worker.DeadLettered != 0 {
				t.Errorf("second worker dead-lettered: got %d; want 0", s2.Worker.DeadLettered)
			}
			verifyOrders(t, d, wkOrders)
		})
	}
}
