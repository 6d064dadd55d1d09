package main

import (
	"strconv"
	"testing"

	"github.com/poolset/poolset/poolsettest"
)

// TestWorkerWithReplica runs the worker with a real replica as its read
// pool on orders where every tenth user is registered just before the
// order: none may be rejected as an unknown user (the user check runs in
// the primary transaction that places the order, so a replica behind the
// primary cannot reject it).
func TestWorkerWithReplica(t *testing.T) {
	pair := poolsettest.MariaDBPair(t, "shop", 1)
	primary, replica := pair.Primary.DSN("shop"), pair.Replicas[0].DSN("shop")
	b := setupBroker(t, "nats")
	if r := runPoolset(t, quickExit(), "seed", "--mysql", primary, "--users", wkUsers, "--products", wkProducts, "--stock", wkStock); r.code != exitOK {
		t.Fatalf("seed: got exit code %d; want 0\n%s", r.code, r.stderr)
	}
	if r := runPoolset(t, quickExit(), "load", "--broker", b.url, "--orders", strconv.Itoa(wkOrders), "--users", wkUsers, "--products", wkProducts,
		"--register-every", "10", "--unknown-every", "0"); r.code != exitOK {
		t.Fatalf("load: got exit code %d; want 0\n%s", r.code, r.stderr)
	}
	w := startWorker(t, shopDB{flag: "--mysql", name: "shop", dsn: primary}, b, "--replica", replica, "--exit-when-idle", "2s")
	s := wantCleanExit(t, "worker with a replica", w)
	if s.Worker.Registered != wkOrders/10 || s.Worker.Accepted != wkOrders || s.Worker.Rejected != 0 {
		t.Errorf("got registered %d, accepted %d, rejected %d; want %d, %d, 0", s.Worker.Registered, s.Worker.Accepted, s.Worker.Rejected, wkOrders/10, wkOrders)
	}
	r := runPoolset(t, quickExit(), "verify", "--mysql", primary, "--expect-orders", strconv.Itoa(wkOrders))
	if r.code != exitOK {
		t.Errorf("verify: got exit code %d; want 0\n%s%s", r.code, r.stdout, r.stderr)
	}
}
