package main

import (
	"database/sql"
	"fmt"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/poolset/poolset/mysql"
)

// TestWorkerAdmin: the admin endpoint answers /healthz, /readyz and
// /metrics while the worker runs, and /readyz turns 503 as soon as the
// worker drains after SIGTERM, while the process still serves. The drain is
// made slow for certain by holding every product row locked from the test,
// so that the order in flight waits; the lock is released after the 503 is
// seen, and the worker then finishes its drain and exits 0.
func TestWorkerAdmin(t *testing.T) {
	for _, kind := range workerBrokers {
		t.Run(kind, func(t *testing.T) {
			b := setupBroker(t, kind)
			d := newShopDB(t, "poolset_t_wk_admin_"+kind)
			seedShop(t, d)
			loadOrders(t, b, wkOrders)

			addr := freeAddr(t)
			base := "http://" + addr
			w := startWorker(t, d, b, "--admin", addr, "--group", "1", "--concurrency", "1", "--drain-timeout", "20s", "--exit-when-idle", "10s")
			waitReady(t, w, addr)
			client := &http.Client{Timeout: 2 * time.Second}
			for _, c := range []struct {
				path     string
				want     int
				contains []string
			}{
				{"/healthz", http.StatusOK, nil},
				{"/readyz", http.StatusOK, nil},
				{"/metrics", http.StatusOK, []string{"poolset_pool_in_use_connections", "poolset_worker_messages_total"}},
			} {
				code, body := httpGet(client, base+c.path)
				if code != c.want {
					t.Errorf("GET %s: got status %d; want %d", c.path, code, c.want)
				}
				for _, s := range c.contains {
					if !strings.Contains(body, s) {
						t.Errorf("GET %s: got no %q in the body; want it", c.path, s)
					}
				}
			}

			waitOrders(t, d, w, 50)
			lockDB, err := sql.Open("mysql", d.dsn)
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			defer lockDB.Close()
			tx, err := lockDB.BeginTx(t.Context(), nil)
			if err != nil {
				t.Fatalf("begin: %v", err)
			}
			defer tx.Rollback()
			rows, err := tx.QueryContext(t.Context(), "SELECT id FROM products FOR UPDATE")
			if err != nil {
				t.Fatalf("lock products: %v", err)
			}
			rows.Close()
			// The worker's transaction waits for the lock: its locking read
			// of products is running (InnoDB does not always list such a
			// wait in INNODB_TRX as LOCK WAIT).
			waiting := 0
			if !eventually(30*time.Second, func() bool {
				waiting = lockingReads(t, d)
				return waiting > 0 || w.exited()
			}) || w.exited() {
				t.Fatalf("locking reads waiting in %s: got %d; want the worker's\n%s", d.name, waiting, serverActivity(t, d))
			}

			w.signal(syscall.SIGTERM)
			fast := &http.Client{Timeout: 500 * time.Millisecond}
			var ready, polls int
			saw503 := eventually(10*time.Second, func() bool {
				polls++
				code, _ := httpGet(fast, base+"/readyz")
				if code == http.StatusOK {
					ready++
				}
				return code == http.StatusServiceUnavailable || w.exited()
			})
			code, _ := httpGet(fast, base+"/readyz")
			health, _ := httpGet(fast, base+"/healthz")
			exitedEarly := w.exited()
			tx.Rollback() // the drain can finish now
			if !saw503 || exitedEarly || code != http.StatusServiceUnavailable {
				t.Errorf("GET /readyz while draining: got status %d (worker exited: %v); want 503 from a worker still draining", code, exitedEarly)
			}
			if health != http.StatusOK {
				t.Errorf("GET /healthz while draining: got status %d; want 200", health)
			}
			t.Logf("/readyz: %d polls after SIGTERM, %d of them 200, then 503", polls, ready)

			s := wantCleanExit(t, "worker", w)
			if !s.Worker.Drained || s.Worker.InFlight != 0 {
				t.Errorf("got drained %v, in flight %d; want true, 0", s.Worker.Drained, s.Worker.InFlight)
			}
			if s.Worker.Acked >= wkOrders {
				t.Errorf("acked: got %d; want fewer than %d (stopped mid-run)", s.Worker.Acked, wkOrders)
			}
		})
	}
}

// lockingReads counts the statements running on d that read products FOR
// UPDATE, from SHOW FULL PROCESSLIST (mysql.Processes: a poll over the text
// protocol, never a prepared information_schema query).
func lockingReads(t *testing.T, d shopDB) int {
	t.Helper()
	ps, err := mysql.Processes(t.Context(), d.admin)
	if err != nil {
		t.Fatalf("lock waits: %v", err)
	}
	n := 0
	for _, p := range ps {
		if p.DB == d.name && p.Command == "Query" &&
			strings.HasPrefix(p.Info, "SELECT ") && strings.Contains(p.Info, " FROM products ") && strings.HasSuffix(p.Info, " FOR UPDATE") {
			n++
		}
	}
	return n
}

// serverActivity describes the server's transactions and the connections
// to d, for a failure message. The query has no argument, so it is not a
// server-side prepared statement.
func serverActivity(t *testing.T, d shopDB) string {
	t.Helper()
	var b strings.Builder
	rows, err := d.admin.QueryContext(t.Context(), `SELECT p.ID, COALESCE(p.DB, ''), p.COMMAND, COALESCE(p.STATE, ''), COALESCE(x.trx_state, ''), COALESCE(p.INFO, '')
FROM information_schema.PROCESSLIST p LEFT JOIN information_schema.INNODB_TRX x ON p.ID = x.trx_mysql_thread_id
WHERE p.DB = '`+strings.ReplaceAll(d.name, "'", "''")+`' OR x.trx_id IS NOT NULL`)
	if err != nil {
		return err.Error()
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		var db, cmd, state, trx, info string
		if err := rows.Scan(&id, &db, &cmd, &state, &trx, &info); err != nil {
			return err.Error()
		}
		fmt.Fprintf(&b, "%d %s %s %q trx=%q %q\n", id, db, cmd, state, trx, info)
	}
	return b.String()
}

// TestWorkerReadyzBrokerDown: /readyz answers 503 "the broker is
// unreachable" while the worker's broker connection is down (it can take
// no message then), and 200 again once it has reconnected; /healthz stays
// 200 throughout. The broker is the test's own nats-server process,
// stopped and started again on the same port.
func TestWorkerReadyzBrokerDown(t *testing.T) {
	b := setupBroker(t, "nats")
	d := newShopDB(t, "poolset_t_wk_readyz_broker")
	seedShop(t, d)
	loadOrders(t, b, 100)

	addr := freeAddr(t)
	base := "http://" + addr
	w := startWorker(t, d, b, "--admin", addr)
	waitReady(t, w, addr)
	client := &http.Client{Timeout: time.Second}

	b.nats.Stop()
	var code int
	var body string
	eventually(30*time.Second, func() bool {
		code, body = httpGet(client, base+"/readyz")
		return code == http.StatusServiceUnavailable || w.exited()
	})
	t.Logf("broker stopped: GET /readyz: %d %q", code, strings.TrimSpace(body))
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "the broker is unreachable") {
		t.Errorf("GET /readyz with the broker down: got %d %q; want 503 naming the broker", code, body)
	}
	if health, _ := httpGet(client, base+"/healthz"); health != http.StatusOK {
		t.Errorf("GET /healthz with the broker down: got %d; want 200", health)
	}

	b.nats.Start()
	eventually(30*time.Second, func() bool {
		code, body = httpGet(client, base+"/readyz")
		return code == http.StatusOK || w.exited()
	})
	t.Logf("broker started: GET /readyz: %d %q", code, strings.TrimSpace(body))
	if code != http.StatusOK {
		t.Errorf("GET /readyz after the broker came back: got %d %q; want 200", code, body)
	}

	w.signal(syscall.SIGTERM)
	s := wantCleanExit(t, "worker", w)
	// No "admin server" step: the admin server is released after the
	// app, on a stack of its own, so that its pools page shows this report.
	wantReleaseOrder(t, s, "consumer", "pools", "broker nats")
}
