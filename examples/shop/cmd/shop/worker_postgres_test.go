package main

import (
	"context"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/poolset/poolset/poolsettest"
)

// The shop on PostgreSQL: the same commands as on MariaDB, with --postgres,
// checked from the server's side through pg_stat_activity.

// pgOrders is the size of the PostgreSQL worker tests: a few hundred
// orders, every 100th from an unknown user.
const pgOrders = 400

// pgSampler counts the server's connections to d's database every 5 ms
// until stop is called, and returns the highest count seen, and whether
// every one of them was a session of the shop (application_name shop).
func pgSampler(t *testing.T, d shopDB) (stop func() (peak int, foreign int)) {
	quit := make(chan struct{})
	type res struct{ peak, foreign int }
	done := make(chan res)
	go func() {
		var r res
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			var n, other int
			err := d.admin.QueryRowContext(context.Background(),
				"SELECT count(*), count(*) FILTER (WHERE application_name <> 'shop') FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", d.name).
				Scan(&n, &other)
			if err == nil {
				r.peak = max(r.peak, n)
				r.foreign = max(r.foreign, other)
			}
			select {
			case <-quit:
				done <- r
				return
			case <-tick.C:
			}
		}
	}()
	return func() (int, int) { close(quit); r := <-done; return r.peak, r.foreign }
}

// wantNoConnections fails t unless the connections to d's database drop
// back to none within 5 s.
func wantNoConnections(t *testing.T, d shopDB, after string) {
	t.Helper()
	var n int
	eventually(5*time.Second, func() bool { n = d.connections(t); return n == 0 })
	if n != 0 {
		t.Errorf("pg_stat_activity after %s: got %d sessions in %s; want 0", after, n, d.name)
	}
}

// TestPostgresWorkerCleanRun: on PostgreSQL and each broker, seed, load a
// few hundred orders, run a worker of at most 4 connections (16 orders in
// flight, one per transaction) until it is
// idle, verify; pg_stat_activity never shows more than the pool allows,
// every session is the shop's, and none is left after the exit.
func TestPostgresWorkerCleanRun(t *testing.T) {
	for _, kind := range workerBrokers {
		t.Run(kind, func(t *testing.T) {
			b := setupBroker(t, kind)
			d := newPostgresShopDB(t, "poolset_t_pg_wk_clean_"+kind)
			seedShop(t, d)
			loadOrders(t, b, pgOrders)

			const maxOpen = 4
			stop := pgSampler(t, d)
			// One order per transaction, 16 at once, on a pool of 4.
			w := startWorker(t, d, b, "--group", "1", "--concurrency", "16", "--max-open", strconv.Itoa(maxOpen), "--exit-when-idle", "2s")
			s := wantCleanExit(t, "worker", w)
			peak, foreign := stop()
			if got := s.Worker.Acked; got != pgOrders {
				t.Errorf("acked: got %d; want %d", got, pgOrders)
			}
			if got, want := s.Worker.Rejected, int64(pgOrders/100); got != want {
				t.Errorf("rejected (unknown users): got %d; want %d", got, want)
			}
			if s.Worker.Duplicates != 0 || s.Worker.DeadLettered != 0 || !s.Worker.Drained {
				t.Errorf("got duplicates %d, dead-lettered %d, drained %v; want 0, 0, true", s.Worker.Duplicates, s.Worker.DeadLettered, s.Worker.Drained)
			}
			t.Logf("pg_stat_activity during the run: peak %d sessions (limit %d), %d not the shop's", peak, maxOpen, foreign)
			if peak <= 0 || peak > maxOpen {
				t.Errorf("peak sessions in %s: got %d; want 1..%d", d.name, peak, maxOpen)
			}
			if foreign != 0 {
				t.Errorf("sessions with another application_name than shop: got %d; want 0", foreign)
			}
			wantNoConnections(t, d, "the worker")
			res := verifyOrders(t, d, pgOrders)
			if e := res.Expected; e != nil && (e.Accepted != pgOrders-pgOrders/100 || e.Rejected != pgOrders/100) {
				t.Errorf("verify: got %d accepted, %d rejected; want %d, %d", e.Accepted, e.Rejected, pgOrders-pgOrders/100, pgOrders/100)
			}
			wantNoConnections(t, d, "verify")
		})
	}
}

// TestPostgresWorkerSIGTERMThenSIGKILL is acceptance 2 of issue 10 at a
// small size: on PostgreSQL and RabbitMQ (which hands a killed worker's
// messages back at once), a worker is stopped by SIGTERM mid-run and exits
// 0, then three more are killed mid-run; a final worker finishes, and
// every order is stored once with stock conserved, no session left.
func TestPostgresWorkerSIGTERMThenSIGKILL(t *testing.T) {
	poolsettest.LockServer(t, poolsettest.SharedServers)
	b := setupBroker(t, "rabbitmq")
	d := newPostgresShopDB(t, "poolset_t_pg_wk_kill")
	seedShop(t, d)
	loadOrders(t, b, wkOrders)

	// One order per transaction, few at once, so that the run is caught
	// mid-way: SIGTERM at ~20%, then a kill after each further ~10%.
	slow := []string{"--group", "1", "--concurrency", "2", "--max-open", "2"}
	w := startWorker(t, d, b, append(slow, "--exit-when-idle", "30s")...)
	at := waitOrders(t, d, w, wkOrders/5)
	if at > wkOrders/2 {
		t.Fatalf("orders when signalled: got %d; want at most %d (the worker is too fast to catch mid-run)", at, wkOrders/2)
	}
	w.signal(syscall.SIGTERM)
	s1 := wantCleanExit(t, "worker stopped by SIGTERM", w)
	if !s1.Worker.Drained || s1.Worker.InFlight != 0 || s1.Worker.Acked >= wkOrders {
		t.Errorf("worker stopped by SIGTERM: got drained %v, in flight %d, acked %d; want true, 0, fewer than %d", s1.Worker.Drained, s1.Worker.InFlight, s1.Worker.Acked, wkOrders)
	}
	wantNoConnections(t, d, "SIGTERM")

	next := d.orders(t) + wkOrders/10
	for i := 1; i <= 3; i++ {
		w := startWorker(t, d, b, append(slow, "--exit-when-idle", "30s")...)
		at := waitOrders(t, d, w, next)
		w.signal(syscall.SIGKILL)
		if r := w.wait(); r.code != -1 {
			t.Errorf("kill %d: got exit code %d; want -1 (killed)", i, r.code)
		}
		t.Logf("kill %d at %d orders stored", i, at)
		next = at + wkOrders/10
	}
	if n := d.orders(t); n >= wkOrders {
		t.Fatalf("orders after the kills: got %d; want fewer than %d (the kills were not mid-run)", n, wkOrders)
	}

	final := startWorker(t, d, b, "--exit-when-idle", "3s")
	s := wantCleanExit(t, "final worker", final)
	t.Logf("final worker: %d placed, %d duplicates (placed before a kill, acked after)", s.Worker.Accepted+s.Worker.Rejected, s.Worker.Duplicates)
	res := verifyOrders(t, d, wkOrders)
	if e := res.Expected; e != nil && (e.Accepted != wkOrders-wkRejected || e.Rejected != wkRejected) {
		t.Errorf("verify: got %d accepted, %d rejected; want %d, %d", e.Accepted, e.Rejected, wkOrders-wkRejected, wkRejected)
	}
	// A killed process's sessions end when the server sees the sockets
	// close.
	wantNoConnections(t, d, "the final worker")
}

// TestPostgresDemo: demo --postgres migrates, seeds, runs the mixed load
// and the worker on the embedded NATS, verifies, and leaves no session;
// pg_stat_activity never shows more than --max-open of the shop's.
func TestPostgresDemo(t *testing.T) {
	d := newPostgresShopDB(t, "poolset_t_pg_demo")
	const maxOpen = 5
	ctx, cancel := context.WithTimeout(t.Context(), runTimeout)
	defer cancel()
	cmd, stdout, stderr := command(t, ctx, nil, "demo", "--postgres", d.dsn,
		"--clients", "8", "--ops", "300", "--orders", "300", "--max-open", strconv.Itoa(maxOpen), "--json")
	stop := pgSampler(t, d)
	runErr := cmd.Run()
	peak, foreign := stop()
	r := finish(t, runErr, stdout, stderr)
	if r.code != exitOK {
		t.Fatalf("exit code: got %d; want %d\nstderr:\n%s", r.code, exitOK, r.stderr)
	}
	sum := decodeOne(t, r.stdout)
	if got := sum["ok"]; got != true {
		t.Errorf("ok: got %v; want true\nstdout: %s", got, r.stdout)
	}
	if got := sum["backend"]; got != "postgres" {
		t.Errorf("backend: got %v; want postgres", got)
	}
	if peak <= 0 || peak > maxOpen || foreign != 0 {
		t.Errorf("sessions in %s during the demo: got peak %d, %d not the shop's; want 1..%d, 0", d.name, peak, foreign, maxOpen)
	}
	v, _ := sum["verify"].(map[string]any)
	exp, _ := v["expected"].(map[string]any)
	if v["ok"] != true || exp["found"] != float64(300) {
		t.Errorf("verify: got %v; want ok, the worker's 300 orders found", v)
	}
	wantNoConnections(t, d, "the demo")
}

// TestPostgresFlags: --postgres and --mysql together, from flags or the
// environment, are a usage error naming both; --replica without either
// names both; a --postgres DSN it cannot parse is a usage error.
func TestPostgresFlags(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  []string
		args []string
		want []string
	}{
		{name: "both flags", args: []string{"migrate", "--mysql", "root@tcp(127.0.0.1:1)/shop", "--postgres", "postgres://postgres@127.0.0.1:1/shop"}, want: []string{"--mysql", "--postgres"}},
		{name: "flag and environment", env: []string{"POOLSET_MYSQL_DSN=root@tcp(127.0.0.1:1)/shop"}, args: []string{"migrate", "--postgres", "postgres://postgres@127.0.0.1:1/shop"}, want: []string{"--mysql", "--postgres"}},
		{name: "replica alone", args: []string{"migrate", "--replica", "postgres://postgres@127.0.0.1:1/shop"}, want: []string{"--replica", "--postgres"}},
		{name: "bad DSN", args: []string{"migrate", "--postgres", "postgres://postgres:" + mysqlPassword + "@127.0.0.1:notaport/shop"}, want: []string{"--postgres"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runPoolset(t, tc.env, tc.args...)
			if r.code != exitUsage {
				t.Fatalf("exit code: got %d; want %d\nstderr: %s", r.code, exitUsage, r.stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr: got %q; want it to name %s", r.stderr, w)
				}
			}
			if strings.Contains(r.stderr, mysqlPassword) {
				t.Errorf("stderr shows the password: %q", r.stderr)
			}
		})
	}
}
