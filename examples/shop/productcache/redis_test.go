package productcache_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/poolset/poolset/examples/shop/productcache"
	"github.com/poolset/poolset/examples/shop/shop"
	"github.com/poolset/poolset/poolsettest"
)

func TestCacheAside(t *testing.T) {
	ctx := context.Background()
	c, err := productcache.Open(ctx, productcache.Options{URL: poolsettest.RedisURL(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pc := productcache.NewProductCache(c, time.Minute, nil)
	id := time.Now().UnixNano() // a key no other run uses
	defer pc.DeleteProduct(ctx, id)
	if _, ok := pc.GetProduct(ctx, id); ok {
		t.Fatal("get before set: got a hit; want a miss")
	}
	pc.SetProduct(ctx, shop.ProductDetails{ID: id, Name: "lamp", PriceCents: 1999})
	d, ok := pc.GetProduct(ctx, id)
	if !ok || d.Name != "lamp" || d.PriceCents != 1999 {
		t.Fatalf("get after set: got %+v, %v; want lamp 1999", d, ok)
	}
	ttl, err := c.TTL(ctx, "poolset:product:"+fmt.Sprint(id)).Result()
	if err != nil || ttl <= 0 || ttl > time.Minute {
		t.Errorf("ttl: got %v, %v; want within 1m", ttl, err)
	}
	pc.DeleteProduct(ctx, id)
	if _, ok := pc.GetProduct(ctx, id); ok {
		t.Error("get after delete: got a hit; want a miss")
	}
	st := pc.Stats()
	if st.Hits != 1 || st.Misses != 2 || st.Failures != 0 {
		t.Errorf("stats: got %+v; want 1 hit, 2 misses, 0 failures", st)
	}
	if err := c.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second close: got %v; want the first result (nil)", err)
	}
}

// TestOutageWarnsOnce runs its own redis-server, stops it while the cache is
// in use, and starts it again.
func TestOutageWarnsOnce(t *testing.T) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		poolsettest.Skip(t, "redis-server not installed: %v", err)
	}
	port := freePort(t)
	start := func() *exec.Cmd {
		cmd := exec.Command(bin, "--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", t.TempDir())
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		for range 200 {
			if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
				c.Close()
				return cmd
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatal("redis-server did not start")
		return nil
	}
	stop := func(cmd *exec.Cmd) { cmd.Process.Kill(); cmd.Wait() }
	srv := start()
	defer func() { stop(srv) }()

	ctx := context.Background()
	var logs poolsettest.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	c, err := productcache.Open(ctx, productcache.Options{URL: fmt.Sprintf("redis://127.0.0.1:%d/0", port)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pc := productcache.NewProductCache(c, time.Minute, log)
	pc.SetProduct(ctx, shop.ProductDetails{ID: 1, Name: "a", PriceCents: 1})

	stop(srv)
	for range 20 {
		if _, ok := pc.GetProduct(ctx, 1); ok {
			t.Fatal("get while Redis is down: got a hit")
		}
		pc.SetProduct(ctx, shop.ProductDetails{ID: 1, Name: "a", PriceCents: 1})
	}
	if n := strings.Count(logs.String(), "cache unavailable"); n != 1 {
		t.Errorf("warnings during one outage: got %d; want 1\n%s", n, logs.String())
	}
	if st := pc.Stats(); !st.Down || st.Outages != 1 {
		t.Errorf("stats while down: got %+v; want down, 1 outage", st)
	}

	srv = start()
	// Redis is retried once a second while down; wait for the cache to
	// notice it is back (bounded).
	deadline := time.Now().Add(10 * time.Second)
	for pc.Stats().Down && time.Now().Before(deadline) {
		pc.SetProduct(ctx, shop.ProductDetails{ID: 1, Name: "b", PriceCents: 2})
		time.Sleep(50 * time.Millisecond)
	}
	if d, ok := pc.GetProduct(ctx, 1); !ok || d.Name != "b" {
		t.Errorf("get after Redis is back: got %+v, %v; want b", d, ok)
	}
	if !strings.Contains(logs.String(), "cache is back") {
		t.Errorf("log lacks the recovery:\n%s", logs.String())
	}
}

func TestOpenErrorHidesPassword(t *testing.T) {
	_, err := productcache.Open(context.Background(), productcache.Options{URL: "redis://:Pw0rdX@127.0.0.1:1/0"})
	if err == nil || strings.Contains(err.Error(), "Pw0rdX") || !strings.Contains(err.Error(), "***") {
		t.Errorf("got %v; want an error with the password as ***", err)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestNewThenPingWhileDown: New does no I/O, so a Redis that is down does
// not stop a start; Ping then reports it, with the password redacted, and
// marks the cache down without a warning of its own (the caller reports
// the error), so reads miss at once.
func TestNewThenPingWhileDown(t *testing.T) {
	c, err := productcache.New(productcache.Options{URL: "redis://:Pw0rdX@127.0.0.1:1/0"})
	if err != nil {
		t.Fatalf("New: got %v; want no error (no I/O)", err)
	}
	defer c.Close()
	var logs poolsettest.Buffer
	pc := productcache.NewProductCache(c, time.Minute, slog.New(slog.NewTextHandler(&logs, nil)))
	err = pc.Ping(context.Background())
	if err == nil || strings.Contains(err.Error(), "Pw0rdX") || !strings.Contains(err.Error(), "***") {
		t.Errorf("Ping: got %v; want an error with the password as ***", err)
	}
	if _, ok := pc.GetProduct(context.Background(), 1); ok {
		t.Error("get while down: got a hit; want a miss")
	}
	if st := pc.Stats(); !st.Down || st.Outages != 1 || st.Failures != 1 || st.Misses != 1 {
		t.Errorf("stats: got %+v; want down, 1 outage, 1 failure, 1 miss", st)
	}
	if logs.String() != "" {
		t.Errorf("log: got %q; want nothing (the caller reports Ping's error)", logs.String())
	}
}
