package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/poolset/poolset"
	"github.com/poolset/poolset/examples/shop/productcache"
	"github.com/poolset/poolset/examples/shop/shop"
	"github.com/poolset/poolset/poolsettest"
)

// silentServer accepts TCP connections on 127.0.0.1 and never answers, so
// that a client's first command waits for its read timeout. close stops
// it, closes what it accepted and waits for its goroutine to end.
func silentServer(t *testing.T) (addr string, close func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
	)
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	})
	var once sync.Once
	return ln.Addr().String(), func() {
		once.Do(func() {
			ln.Close()
			wg.Wait()
			mu.Lock()
			for _, c := range conns {
				c.Close()
			}
			mu.Unlock()
		})
	}
}

// freeLoopbackPort returns a TCP port of 127.0.0.1 that was free a moment
// ago.
func freeLoopbackPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startRedisServer starts a redis-server of the test's own on 127.0.0.1:port,
// requiring password, without persistence, and waits (at most 5 s) until it accepts
// connections. It is killed, and waited for, when t ends. It skips t when
// no redis-server is installed.
func startRedisServer(t *testing.T, port int, password string) {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		poolsettest.Skip(t, "redis-server not installed: %v", err)
	}
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--requirepass", password, "--dir", t.TempDir())
	if err := cmd.Start(); err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	if !eventually(5*time.Second, func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	}) {
		t.Fatalf("redis-server on %s: not accepting connections", addr)
	}
}

// TestOpenAppRedisDown: the cache is optional. With --redis naming a Redis
// that refuses connections or never answers, openApp succeeds, logs one
// warning naming --redis with the password redacted, and the shop reads
// product details from the database. A Redis started later, on the
// refused address, is used from its first answer on: the cache counts
// hits. Release leaves no goroutine behind.
func TestOpenAppRedisDown(t *testing.T) {
	tests := []struct {
		name string
		// redis returns the Redis address, a function that stops what it
		// started, and one that starts a Redis there (nil: none can).
		redis func(t *testing.T) (addr string, stop func(), late func())
	}{
		{
			name: "connection refused",
			redis: func(t *testing.T) (string, func(), func()) {
				port := freeLoopbackPort(t)
				return fmt.Sprintf("127.0.0.1:%d", port), func() {}, func() { startRedisServer(t, port, redisPassword) }
			},
		},
		{
			name: "no answer",
			redis: func(t *testing.T) (string, func(), func()) {
				addr, stop := silentServer(t)
				return addr, stop, nil
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
			addr, stopRedis, late := tt.redis(t)
			defer stopRedis()
			var logs poolsettest.Buffer
			log := slog.New(slog.NewTextHandler(&logs, nil))
			cfg := config{Redis: "redis://:" + redisPassword + "@" + addr, Data: t.TempDir(), MaxOpen: 10}
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()

			a, err := openApp(ctx, cfg, openOpts{cache: true}, log)
			if err != nil {
				t.Fatalf("openApp: got %v; want no error (the cache is optional)", err)
			}
			defer a.release(ctx)
			warn := logs.String()
			if !strings.Contains(warn, "level=WARN") || !strings.Contains(warn, "--redis") || !strings.Contains(warn, "***") || strings.Contains(warn, redisPassword) {
				t.Errorf("log: got %q; want a warning naming --redis, with the password as ***", warn)
			}
			if _, err := shop.Migrate(poolset.WithRepo(ctx, "migrations"), a.set.Primary().DB(), a.dialect); err != nil {
				t.Fatalf("migrate: %v", err)
			}
			if _, err := a.shop.Seed(ctx, shop.SeedConfig{Users: 1, Products: 1, Stock: 10}); err != nil {
				t.Fatalf("seed: %v", err)
			}
			if d, err := a.shop.Products.Details(ctx, 1); err != nil || d.ID != 1 {
				t.Errorf("product details with Redis down: got %+v, %v; want product 1 from the database", d, err)
			}
			if st := a.cache.Stats(); !st.Down || st.Outages != 1 || st.Hits != 0 {
				t.Errorf("cache stats with Redis down: got %+v; want down, 1 outage, no hit", st)
			}

			if late != nil {
				late()
				// The cache tries Redis again a second after a failure;
				// the wait is bounded, the assertion is on the hit count.
				var st productcache.CacheStats
				eventually(10*time.Second, func() bool {
					a.shop.Products.Details(ctx, 1)
					st = a.cache.Stats()
					return st.Hits > 0
				})
				if st.Hits == 0 || st.Down {
					t.Errorf("cache stats after Redis started: got %+v; want up, with hits", st)
				}
				if !strings.Contains(logs.String(), "cache is back") {
					t.Errorf("log: got no \"cache is back\"; want it once Redis answers\n%s", logs.String())
				}
			}

			report, err := a.release(ctx)
			if err != nil {
				t.Errorf("release: %v\n%s", err, report)
			}
			t.Logf("log:\n%s", logs.String())
		})
	}
}
