package main

import (
	"database/sql"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/poolset/poolset/examples/shop/worker"
	"github.com/poolset/poolset/poolsettest"
)

// outageFor is how long the outage tests keep the database down: longer
// than a message's whole retry budget at the defaults (--max-deliver 5,
// first retry after 100 ms, doubling: about 1.5 s from first failure to
// dead letter), and longer than the NATS ack wait the tests set, so that
// only holding the messages, and extending them, loses none.
// POOLSET_OUTAGE_SECONDS sets another length, and POOLSET_OUTAGE_ORDERS
// another number of orders than wkOrders, for runs by hand at full size.
const outageFor = 4 * time.Second

// outageSize returns the outage tests' length and number of orders.
func outageSize(t *testing.T) (time.Duration, int) {
	t.Helper()
	d, n := outageFor, wkOrders
	if v := os.Getenv("POOLSET_OUTAGE_SECONDS"); v != "" {
		s, err := strconv.Atoi(v)
		if err != nil || s <= 0 {
			t.Fatalf("POOLSET_OUTAGE_SECONDS: got %q; want a positive number of seconds", v)
		}
		d = time.Duration(s) * time.Second
	}
	if v := os.Getenv("POOLSET_OUTAGE_ORDERS"); v != "" {
		k, err := strconv.Atoi(v)
		if err != nil || k < 100 {
			t.Fatalf("POOLSET_OUTAGE_ORDERS: got %q; want 100 or more", v)
		}
		n = k
	}
	return d, n
}

// outageAckWait is the NATS --ack-wait of the outage tests: shorter than
// the outage, so that a held message the worker did not extend would be
// redelivered and come back as a duplicate.
const outageAckWait = "3s"

// outageDB starts a MariaDB primary of the test's own, which the test may
// kill, and returns it with the worker tests' view of its database "shop".
func outageDB(t *testing.T) (*poolsettest.Instance, shopDB) {
	t.Helper()
	pair := poolsettest.MariaDBPair(t, "shop", 0)
	admin, err := sql.Open("mysql", pair.Primary.DSN(""))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close() })
	return pair.Primary, shopDB{flag: "--mysql", name: "shop", dsn: pair.Primary.DSN("shop"), admin: admin}
}

// TestWorkerDatabaseOutage: the worker's database is killed (SIGKILL, as a
// crash) at about 30% of the orders and started again 4 s later. The worker
// holds the messages the outage failed instead of spending their
// deliveries, fetches nothing meanwhile, and finishes once the database is
// back: nothing dead-lettered, nothing delivered twice, every order stored
// once.
func TestWorkerDatabaseOutage(t *testing.T) {
	for _, kind := range workerBrokers {
		t.Run(kind, func(t *testing.T) {
			down, n := outageSize(t)
			b := setupBroker(t, kind)
			db, d := outageDB(t)
			seedShop(t, d)
			loadOrders(t, b, n)

			w := startWorker(t, d, b, "--group", "1", "--concurrency", "4", "--exit-when-idle", "5s", "--ack-wait", outageAckWait)
			at := waitOrders(t, d, w, n*3/10)
			if err := db.Kill(); err != nil {
				t.Fatal(err)
			}
			time.Sleep(down)
			if err := db.Start(t.Context()); err != nil {
				t.Fatal(err)
			}
			t.Logf("mariadbd killed at %d of %d orders stored, started again %v later", at, n, down)

			s := wantCleanExit(t, "worker", w)
			r := w.wait()
			for _, want := range []string{"the database does not answer", "the database answers again"} {
				if !strings.Contains(r.stderr, want) {
					t.Errorf("worker log: got no %q; want it\n%s", want, tail(r.stderr, 30))
				}
			}
			// A transaction whose commit the kill cut off may have
			// committed: placed again, it is a duplicate. At most one
			// per transaction in flight (--concurrency 4).
			wantHeldThrough(t, s.Worker, n, 4)
			verifyOrders(t, d, n)
		})
	}
}

// wantHeldThrough fails t unless the worker went through at least one
// outage holding its n messages: none dead-lettered, nak'ed or left
// unsettled, each received once (a held message that was not extended
// comes again after the ack wait), at most maxDuplicates commits in doubt
// placed again, and every order accepted or rejected once.
func wantHeldThrough(t *testing.T, ws worker.Summary, n int, maxDuplicates int64) {
	t.Helper()
	if ws.Outages < 1 || ws.OutageTime <= 0 {
		t.Errorf("outages: got %d, %v down; want at least 1", ws.Outages, ws.OutageTime)
	}
	if ws.DeadLettered != 0 || ws.Naked != 0 || ws.SettleErrors != 0 {
		t.Errorf("dead-lettered, nak'ed, settle errors: got %d, %d, %d; want 0, 0, 0 (the outage is not the messages' fault)",
			ws.DeadLettered, ws.Naked, ws.SettleErrors)
	}
	if ws.Received != int64(n) {
		t.Errorf("received: got %d; want %d (each message delivered once)", ws.Received, n)
	}
	if ws.Duplicates > maxDuplicates {
		t.Errorf("duplicates: got %d; want at most %d (commits in doubt at the kill)", ws.Duplicates, maxDuplicates)
	}
	if got := ws.Accepted + ws.Rejected + ws.Duplicates; got != int64(n) {
		t.Errorf("accepted+rejected+duplicates: got %d; want %d", got, n)
	}
}

// TestWorkerDatabaseOutageGrouped: orders placed in groups (the default)
// when the database dies. The test locks every product row first, so that
// the worker's first groups wait on the lock with every order fetched and
// pending, and kills the database while they wait. The worker holds all of
// them (extending each on NATS), places them once the database is back, and
// every message was received once.
func TestWorkerDatabaseOutageGrouped(t *testing.T) {
	b := setupBroker(t, "nats")
	db, d := outageDB(t)
	seedShop(t, d)
	loadOrders(t, b, wkOrders)

	lockProducts(t, d)

	w := startWorker(t, d, b, "--group", "100", "--exit-when-idle", "5s", "--ack-wait", outageAckWait)
	waiting := waitLockingReads(t, d, w)
	if got := d.orders(t); got != 0 {
		t.Fatalf("orders before the kill: got %d; want 0 (all waiting on the lock)", got)
	}
	if err := db.Kill(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(outageFor)
	if err := db.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Logf("mariadbd killed with %d group transactions waiting on the product locks, started again %v later", waiting, outageFor)

	s := wantCleanExit(t, "worker", w)
	// Nothing had committed at the kill: no duplicate is possible.
	wantHeldThrough(t, s.Worker, wkOrders, 0)
	verifyOrders(t, d, wkOrders)
}

// TestWorkerSIGTERMWhileDatabaseDown: the database is down when SIGTERM
// comes. The worker waits out its drain deadline for the database, hands
// the held messages back (exit code 3, abandoned), and dead-letters none;
// a second worker, once the database is back, stores every order once.
func TestWorkerSIGTERMWhileDatabaseDown(t *testing.T) {
	b := setupBroker(t, "nats")
	db, d := outageDB(t)
	seedShop(t, d)
	loadOrders(t, b, wkOrders)

	w := startWorker(t, d, b, "--group", "1", "--concurrency", "4", "--drain-timeout", "1s", "--ack-wait", outageAckWait)
	at := waitOrders(t, d, w, wkOrders/10)
	if err := db.Kill(); err != nil {
		t.Fatal(err)
	}
	if !eventually(30*time.Second, func() bool { return strings.Contains(w.stderr.String(), "the database does not answer") }) {
		t.Fatalf("worker log: got no outage; want one\n%s", tail(w.stderr.String(), 30))
	}
	w.signal(syscall.SIGTERM)
	r, s := w.summary()
	if r.code != exitAbandoned {
		t.Fatalf("exit code: got %d; want %d (abandoned)\nstderr:\n%s", r.code, exitAbandoned, tail(r.stderr, 30))
	}
	ws := s.Worker
	t.Logf("killed at %d orders stored; first worker: %+v", at, ws)
	if ws.Abandoned == 0 || ws.DeadLettered != 0 || ws.Naked != 0 {
		t.Errorf("abandoned, dead-lettered, nak'ed: got %d, %d, %d; want >0, 0, 0", ws.Abandoned, ws.DeadLettered, ws.Naked)
	}

	if err := db.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	w2 := startWorker(t, d, b, "--exit-when-idle", "3s")
	s2 := wantCleanExit(t, "second worker", w2)
	if s2.Worker.DeadLettered != 0 {
		t.Errorf("second worker dead-lettered: got %d; want 0", s2.Worker.DeadLettered)
	}
	if got := ws.Accepted + ws.Rejected + s2.Worker.Accepted + s2.Worker.Rejected; got != wkOrders {
		t.Errorf("accepted+rejected over both workers: got %d; want %d", got, wkOrders)
	}
	verifyOrders(t, d, wkOrders)
}
