package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

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

// TestOpenAppRedisFailsAfterSQL checks that when Redis fails after the pool
// set was opened, openApp releases the SQL pools it opened: no connection
// to the database is left, none is aborted, and no goroutine outlives it.
func TestOpenAppRedisFailsAfterSQL(t *testing.T) {
	poolsettest.LockServer(t, poolsettest.SharedServers)
	const dbName = "poolset_t_redisfail"
	dsn := poolsettest.MySQLDatabase(t, dbName)

	tests := []struct {
		name string
		// redis returns the --redis URL and a function that stops what it
		// started.
		redis func(t *testing.T) (url string, stop func())
		// sqlSeen is whether the SQL pools' connections are sure to be
		// seen by the server while Redis is being tried: true when Redis
		// takes its whole timeout to fail.
		sqlSeen bool
	}{
		{
			name:  "connection refused",
			redis: func(*testing.T) (string, func()) { return "redis://127.0.0.1:1", func() {} },
		},
		{
			name: "no answer",
			redis: func(t *testing.T) (string, func()) {
				addr, stop := silentServer(t)
				return "redis://" + addr, stop
			},
			sqlSeen: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
			admin := adminDB(t)
			defer admin.Close()
			redisURL, stopRedis := tt.redis(t)
			defer stopRedis()

			threads0 := poolsettest.Steady(func() int64 { return globalStatus(t, admin, "Threads_connected") })
			aborted0 := poolsettest.Steady(func() int64 { return globalStatus(t, admin, "Aborted_clients") })

			cfg := config{MySQL: dsn, Replicas: []string{dsn}, Redis: redisURL, Data: t.TempDir(), MaxOpen: 10}
			log := slog.New(slog.NewTextHandler(t.Output(), nil))
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			stop := peakSampler(admin, dbName)
			a, err := openApp(ctx, cfg, openOpts{cache: true}, log)
			peak := stop()
			if err == nil {
				a.release(ctx)
				t.Fatalf("openApp: got no error; want one naming --redis")
			}
			if msg := err.Error(); !strings.HasPrefix(msg, "--redis: ") || !strings.Contains(msg, "redis: ") {
				t.Errorf("openApp error: got %q; want it to start with \"--redis: \" and name redis", msg)
			}
			var ue *usageError
			if errors.As(err, &ue) {
				t.Errorf("openApp error: got a usage error; want a runtime error (exit 1)")
			}
			if tt.sqlSeen && peak < 1 {
				t.Errorf("connections to %s while Redis was tried: got peak %d; want >= 1 (the SQL pools open first)", dbName, peak)
			}

			left := connectionsTo(t, admin, dbName, 5*time.Second)
			var threads int64
			threadsBack := eventually(5*time.Second, func() bool {
				threads = globalStatus(t, admin, "Threads_connected")
				return threads <= threads0
			})
			aborted := globalStatus(t, admin, "Aborted_clients")
			t.Logf("error: %v", err)
			t.Logf("peak connections to %s: %d, left %d; Threads_connected %d -> %d; Aborted_clients %d -> %d",
				dbName, peak, left, threads0, threads, aborted0, aborted)
			if left != 0 {
				t.Errorf("connections to %s after openApp failed: got %d; want 0", dbName, left)
			}
			if !threadsBack {
				t.Errorf("Threads_connected after openApp failed: got %d; want %d (the baseline)", threads, threads0)
			}
			if aborted != aborted0 {
				t.Errorf("Aborted_clients: got %d; want %d (unchanged: the pools closed their connections cleanly)", aborted, aborted0)
			}
		})
	}
}
