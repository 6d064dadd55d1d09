package main

import (
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/poolset/poolset/poolsettest"
)

// TestWorkerCleanRun: seed, load 2,000 orders, run a worker until it is
// idle, verify.
func TestWorkerCleanRun(t *testing.T) {
	for _, kind := range workerBrokers {
		t.Run(kind, func(t *testing.T) {
			b := setupBroker(t, kind)
			d := newShopDB(t, "poolset_t_wk_clean_"+kind)
			seedShop(t, d)
			loadOrders(t, b, wkOrders)

			w := startWorker(t, d, b, "--exit-when-idle", "2s")
			s := wantCleanExit(t, "worker", w)
			if got, want := s.Worker.Acked, int64(wkOrders); got != want {
				t.Errorf("acked: got %d; want %d", got, want)
			}
			if got, want := s.Worker.Accepted+s.Worker.Rejected, int64(wkOrders); got != want {
				t.Errorf("accepted+rejected: got %d; want %d", got, want)
			}
			if got, want := s.Worker.Rejected, int64(wkRejected); got != want {
				t.Errorf("rejected (unknown users): got %d; want %d", got, want)
			}
			if s.Worker.Duplicates != 0 || s.Worker.DeadLettered != 0 || !s.Worker.Drained {
				t.Errorf("got duplicates %d, dead-lettered %d, drained %v; want 0, 0, true", s.Worker.Duplicates, s.Worker.DeadLettered, s.Worker.Drained)
			}

			res := verifyOrders(t, d, wkOrders)
			if e := res.Expected; e != nil && (e.Accepted != wkOrders-wkRejected || e.Rejected != wkRejected) {
				t.Errorf("verify: got %d accepted, %d rejected; want %d, %d", e.Accepted, e.Rejected, wkOrders-wkRejected, wkRejected)
			}
		})
	}
}

// TestWorkerSIGTERMMidRun: SIGTERM at 20-80% drains what is in flight,
// exits 0 with nothing abandoned, and leaves no MariaDB or Redis connection
// behind and no aborted client; a second worker finishes the rest, each
// order stored exactly once.
func TestWorkerSIGTERMMidRun(t *testing.T) {
	for _, kind := range workerBrokers {
		t.Run(kind, func(t *testing.T) {
			poolsettest.LockServer(t, poolsettest.SharedServers)
			b := setupBroker(t, kind)
			d := newShopDB(t, "poolset_t_wk_term_"+kind)
			redisURL := poolsettest.RedisURL(t)
			redisClients := redisClientCounter(t, redisURL)

			// The baselines count the admin connection and the Redis
			// client above, both still open at the end.
			threads0 := poolsettest.Steady(func() int64 { return globalStatus(t, d.admin, "Threads_connected") })
			aborted0 := poolsettest.Steady(func() int64 { return globalStatus(t, d.admin, "Aborted_clients") })
			redis0 := poolsettest.Steady(redisClients)

			seedShop(t, d)
			loadOrders(t, b, wkOrders)
			w := startWorker(t, d, b, "--group", "1", "--concurrency", "4", "--drain-timeout", "20s",
				"--redis", redisURL, "--exit-when-idle", "10s")
			at := waitOrders(t, d, w, wkOrders/5)
			if at > wkOrders*4/5 {
				t.Fatalf("orders when signalled: got %d; want at most %d (the worker is too fast to catch mid-run)", at, wkOrders*4/5)
			}
			w.signal(syscall.SIGTERM)
			s1 := wantCleanExit(t, "first worker", w)
			t.Logf("SIGTERM at %d of %d orders stored; exit %s after it", at, wkOrders, w.exitedAt.Sub(w.signalledAt).Round(time.Millisecond))
			if s1.Worker.Acked >= wkOrders {
				t.Errorf("first worker acked: got %d; want fewer than %d (stopped mid-run)", s1.Worker.Acked, wkOrders)
			}
			if !s1.Worker.Drained || s1.Worker.InFlight != 0 {
				t.Errorf("first worker: got drained %v, in flight %d; want true, 0", s1.Worker.Drained, s1.Worker.InFlight)
			}

			var threads int64
			eventually(5*time.Second, func() bool {
				threads = globalStatus(t, d.admin, "Threads_connected")
				return threads == threads0
			})
			if threads != threads0 {
				t.Errorf("Threads_connected after the worker: got %d; want the baseline %d", threads, threads0)
			}
			if got := globalStatus(t, d.admin, "Aborted_clients"); got != aborted0 {
				t.Errorf("Aborted_clients: got %d; want the baseline %d", got, aborted0)
			}
			var rcs int64
			eventually(5*time.Second, func() bool {
				rcs = redisClients()
				return rcs == redis0
			})
			if rcs != redis0 {
				t.Errorf("Redis connected_clients after the worker: got %d; want the baseline %d", rcs, redis0)
			}
			t.Logf("Threads_connected %d -> %d, Aborted_clients %d -> %d, Redis clients %d -> %d",
				threads0, threads, aborted0, globalStatus(t, d.admin, "Aborted_clients"), redis0, rcs)

			w2 := startWorker(t, d, b, "--exit-when-idle", "2s", "--redis", redisURL)
			s2 := wantCleanExit(t, "second worker", w2)
			wantPlacedOnce(t, s1, s2)
			verifyOrders(t, d, wkOrders)
		})
	}
}

// TestWorkerSIGKILLMidRun: a worker killed three times mid-run loses
// nothing and stores nothing twice: a final worker finishes, and every
// order is stored once with stock conserved.
func TestWorkerSIGKILLMidRun(t *testing.T) {
	for _, kind := range workerBrokers {
		t.Run(kind, func(t *testing.T) {
			// Killing clients raises Aborted_clients, which other tests
			// assert on.
			poolsettest.LockServer(t, poolsettest.SharedServers)
			b := setupBroker(t, kind)
			d := newShopDB(t, "poolset_t_wk_kill_"+kind)
			threads0 := poolsettest.Steady(func() int64 { return globalStatus(t, d.admin, "Threads_connected") })
			aborted0 := poolsettest.Steady(func() int64 { return globalStatus(t, d.admin, "Aborted_clients") })
			seedShop(t, d)
			loadOrders(t, b, wkOrders)

			// Kill at ~30%, then after each restart once it has stored
			// another ~10%.
			next := wkOrders * 3 / 10
			var lastKill time.Time
			for i := 1; i <= 3; i++ {
				w := startWorker(t, d, b, "--group", "1", "--concurrency", "4", "--exit-when-idle", "30s")
				at := waitOrders(t, d, w, next)
				w.signal(syscall.SIGKILL)
				lastKill = time.Now()
				r := w.wait()
				if r.code != -1 {
					t.Errorf("kill %d: got exit code %d; want -1 (killed)", i, r.code)
				}
				t.Logf("kill %d at %d orders stored", i, at)
				next = at + wkOrders/10
			}

			// On NATS the deliveries the killed workers held come back
			// only after the consumer's AckWait (30 s, no flag to change
			// it), so the final worker runs until the broker has nothing
			// pending and is then stopped; on RabbitMQ they are requeued
			// when the connection drops, and the worker exits when idle.
			var final *workerProc
			switch kind {
			case "nats":
				final = startWorker(t, d, b, "--exit-when-idle", "40s")
				conn := openTestBroker(t, b)
				var pending int64
				if !eventually(60*time.Second, func() bool {
					n, err := conn.Pending(t.Context())
					if err == nil {
						pending = n
					}
					return err == nil && n == 0 || final.exited()
				}) || final.exited() {
					t.Fatalf("NATS pending: got %d; want 0 before the final worker exits", pending)
				}
				t.Logf("NATS: the last redelivery was settled %s after the third kill (consumer AckWait 30s)", time.Since(lastKill).Round(100*time.Millisecond))
				final.signal(syscall.SIGTERM)
			default:
				final = startWorker(t, d, b, "--exit-when-idle", "3s")
			}
			s := wantCleanExit(t, "final worker", final)
			t.Logf("final worker: %d duplicates (placed before a kill, acked after)", s.Worker.Duplicates)

			res := verifyOrders(t, d, wkOrders)
			if e := res.Expected; e != nil && (e.Accepted != wkOrders-wkRejected || e.Rejected != wkRejected) {
				t.Errorf("verify: got %d accepted, %d rejected; want %d, %d", e.Accepted, e.Rejected, wkOrders-wkRejected, wkRejected)
			}
			var threads int64
			eventually(5*time.Second, func() bool {
				threads = globalStatus(t, d.admin, "Threads_connected")
				return threads == threads0
			})
			t.Logf("Threads_connected %d -> %d, Aborted_clients %d -> %d (3 kills)",
				threads0, threads, aborted0, globalStatus(t, d.admin, "Aborted_clients"))
			if threads != threads0 {
				t.Errorf("Threads_connected after all workers: got %d; want the baseline %d", threads, threads0)
			}
		})
	}
}

// TestWorkerTwoWorkers: two workers share the broker; one is stopped at
// ~30%, the other finishes; both exit 0 and every order is stored once.
func TestWorkerTwoWorkers(t *testing.T) {
	for _, kind := range workerBrokers {
		t.Run(kind, func(t *testing.T) {
			b := setupBroker(t, kind)
			d := newShopDB(t, "poolset_t_wk_two_"+kind)
			seedShop(t, d)
			loadOrders(t, b, wkOrders)

			args := []string{"--group", "1", "--concurrency", "4", "--exit-when-idle", "3s"}
			w1 := startWorker(t, d, b, args...)
			w2 := startWorker(t, d, b, args...)
			at := waitOrders(t, d, w1, wkOrders*3/10)
			w1.signal(syscall.SIGTERM)
			t.Logf("SIGTERM to the first worker at %d orders stored", at)
			s1 := wantCleanExit(t, "first worker", w1)
			s2 := wantCleanExit(t, "second worker", w2)
			if s1.Worker.Acked == 0 || s2.Worker.Acked == 0 {
				t.Errorf("acked: got %d and %d; want both workers to take a share", s1.Worker.Acked, s2.Worker.Acked)
			}
			wantPlacedOnce(t, s1, s2)
			verifyOrders(t, d, wkOrders)
		})
	}
}

// TestWorkerSIGTERMIdle: a worker with nothing to do exits 0 on SIGTERM.
func TestWorkerSIGTERMIdle(t *testing.T) {
	for _, kind := range workerBrokers {
		t.Run(kind, func(t *testing.T) {
			b := setupBroker(t, kind)
			d := newShopDB(t, "poolset_t_wk_idle_"+kind)
			seedShop(t, d)
			addr := freeAddr(t)
			w := startWorker(t, d, b, "--admin", addr)
			waitReady(t, w, addr)
			// Idle: it has reported its progress, nothing processed, at
			// least once.
			if !eventually(30*time.Second, func() bool {
				return strings.Contains(w.stderr.String(), "worker: 0 processed") || w.exited()
			}) || w.exited() {
				t.Fatalf("worker: got no progress line; want \"worker: 0 processed\"\n%s", tail(w.stderr.String(), 20))
			}
			w.signal(syscall.SIGTERM)
			s := wantCleanExit(t, "worker", w)
			t.Logf("SIGTERM to exit when idle: %s", w.exitedAt.Sub(w.signalledAt).Round(time.Millisecond))
			if s.Worker.Received != 0 || !s.Worker.Drained {
				t.Errorf("got received %d, drained %v; want 0, true", s.Worker.Received, s.Worker.Drained)
			}
			if code, _ := httpGet(&http.Client{Timeout: time.Second}, "http://"+addr+"/healthz"); code != 0 {
				t.Errorf("GET /healthz after exit: got status %d; want no answer", code)
			}
		})
	}
}

// wantPlacedOnce fails t unless the workers of ss placed the wkOrders
// orders between them, each once: accepted plus rejected adds up to
// wkOrders. Delivery is at least once, so a message may come twice (an ack
// lost, or the broker handing a message back as a consumer is cancelled);
// the worker counts it as a duplicate, with no second effect, and the test
// logs how many.
func wantPlacedOnce(t *testing.T, ss ...workerSummaryJSON) {
	t.Helper()
	var placed, dups, acked int64
	for _, s := range ss {
		placed += s.Worker.Accepted + s.Worker.Rejected
		dups += s.Worker.Duplicates
		acked += s.Worker.Acked
	}
	if placed != wkOrders {
		t.Errorf("orders placed by the workers (accepted+rejected): got %d; want %d", placed, wkOrders)
	}
	t.Logf("workers: %d placed, %d duplicates, %d acked", placed, dups, acked)
}

// TestWorkerWithoutRedis: a worker given --redis for a Redis that refuses
// connections starts anyway (the cache is optional, and the worker does
// not read through it), warns once naming --redis with the password
// redacted, places every order, and exits 0. Its release runs in the
// documented order: the consumer first (intake stops), then Redis, the SQL
// pool, and the broker connection last; the admin server (which answers
// 503 from the drain on) is released after that report, which its pools
// page shows.
func TestWorkerWithoutRedis(t *testing.T) {
	const orders = 200
	b := setupBroker(t, "nats")
	d := newShopDB(t, "poolset_t_wk_noredis")
	seedShop(t, d)
	loadOrders(t, b, orders)

	redisURL := "redis://:" + redisPassword + "@" + freeAddr(t)
	w := startWorker(t, d, b, "--redis", redisURL, "--admin", freeAddr(t), "--exit-when-idle", "2s")
	s := wantCleanExit(t, "worker", w)
	r := w.wait()
	if got := s.Worker.Acked; got != orders {
		t.Errorf("acked: got %d; want %d", got, orders)
	}
	if n := strings.Count(r.stderr, "--redis: "); n != 1 || !strings.Contains(r.stderr, "level=WARN") || !strings.Contains(r.stderr, "redis://:***@") {
		t.Errorf("worker log: got %d warnings naming --redis; want 1, with the URL redacted\n%s", n, tail(r.stderr, 20))
	}
	if strings.Contains(r.stderr, redisPassword) || strings.Contains(r.stdout, redisPassword) {
		t.Errorf("worker output shows the Redis password")
	}
	// No "admin server" step: the admin server is released after the
	// app, on a stack of its own, so that its pools page shows this report.
	wantReleaseOrder(t, s, "consumer", "redis", "pools", "broker nats")
	verifyOrders(t, d, orders)
}
