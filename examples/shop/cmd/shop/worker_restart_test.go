package main

import (
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/poolset/poolset/poolsettest"
)

// TestWorkerBrokerRestart: the broker goes away at ~30% and comes back;
// the worker reconnects, finishes and exits 0, every order stored once.
// NATS: the test's own nats-server process is stopped and started again.
// RabbitMQ: the shared server is not restarted; it closes the worker's
// connection instead (rabbitmqctl close_connection, only the worker's).
func TestWorkerBrokerRestart(t *testing.T) {
	for _, kind := range workerBrokers {
		t.Run(kind, func(t *testing.T) {
			if kind == "rabbitmq" {
				if _, err := exec.LookPath("rabbitmqctl"); err != nil {
					poolsettest.Skip(t, "rabbitmqctl not found: %v", err)
				}
			}
			b := setupBroker(t, kind)
			d := newShopDB(t, "poolset_t_wk_restart_"+kind)
			seedShop(t, d)
			loadOrders(t, b, wkOrders)

			w := startWorker(t, d, b, "--group", "1", "--concurrency", "2", "--exit-when-idle", "5s")
			waitOrders(t, d, w, 1)
			var rabbitConn string
			if kind == "rabbitmq" {
				// rabbitmqctl is slow: find the worker's connection before
				// the 30% mark, so that only the close runs after it.
				ports, err := tcpPortsTo(w.cmd.Process.Pid, 5672)
				if err != nil {
					poolsettest.Skip(t, "worker's connections: %v", err)
				}
				pids := rabbitConnections(t, ports)
				if len(pids) != 1 {
					t.Fatalf("worker's connections: got %v (client ports %v); want 1", pids, ports)
				}
				rabbitConn = pids[0]
			}
			at := waitOrders(t, d, w, wkOrders*3/10)
			switch kind {
			case "nats":
				b.nats.Stop()
				time.Sleep(time.Second) // the outage
				b.nats.Start()
				t.Logf("nats-server stopped at %d orders stored, started again 1s later", at)
			case "rabbitmq":
				// rabbitmqctl takes seconds, in which an unhindered worker
				// may store every order: hold the product rows so that the
				// close surely comes mid-run, with orders in flight.
				lock := lockProducts(t, d)
				waitLockingReads(t, d, w)
				closeRabbitConnection(t, rabbitConn, "test")
				after := d.orders(t)
				lock.Rollback()
				t.Logf("worker's connection closed by the server at %d orders stored (%d once rabbitmqctl returned)", at, after)
				if after >= wkOrders {
					t.Fatalf("orders once the connection was closed: got %d; want fewer than %d (closed mid-run)", after, wkOrders)
				}
			}

			s := wantCleanExit(t, "worker", w)
			r := w.wait()
			if want := map[string]string{"nats": "nats: reconnected", "rabbitmq": "rabbitmq: reconnected"}[kind]; !strings.Contains(r.stderr, want) {
				t.Errorf("worker log: got no %q; want it\n%s", want, tail(r.stderr, 30))
			}
			t.Logf("worker: %d duplicates, %d settle errors, %d nak'ed across the outage", s.Worker.Duplicates, s.Worker.SettleErrors, s.Worker.Naked)
			// An order whose ack failed across the outage is counted as a
			// settle error rather than as accepted or rejected.
			if got := s.Worker.Accepted + s.Worker.Rejected + s.Worker.SettleErrors; got != wkOrders {
				t.Errorf("accepted+rejected+settle errors: got %d; want %d", got, wkOrders)
			}
			if s.Worker.DeadLettered != 0 {
				t.Errorf("dead-lettered: got %d; want 0", s.Worker.DeadLettered)
			}
			verifyOrders(t, d, wkOrders)
		})
	}
}
