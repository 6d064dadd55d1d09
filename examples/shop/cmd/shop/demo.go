package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/poolset/poolset"
	"github.com/poolset/poolset/examples/shop/productcache"
	"github.com/poolset/poolset/examples/shop/shop"
	"github.com/poolset/poolset/examples/shop/worker"
	"github.com/poolset/poolset/release"
)

// demoSummary is what demo prints, as text or as one JSON object.
type demoSummary struct {
	Command    string                   `json:"command"`
	Backend    string                   `json:"backend"`
	Migrations int                      `json:"migrations_applied"`
	Seeded     shop.SeedResult          `json:"seeded"`
	Load       shop.MixResult           `json:"load"`
	Published  *loadResult              `json:"published,omitempty"`
	Worker     *worker.Summary          `json:"worker,omitempty"`
	Verify     verifyResult             `json:"verify"`
	Pools      []poolset.PoolStats      `json:"pools"`
	Cache      *productcache.CacheStats `json:"cache"`
	Release    *release.Report          `json:"release"`
	OK         bool                     `json:"ok"`
}

func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer, log *slog.Logger) error {
	var cfg config
	fs := newFlagSet("demo", stdout, &cfg)
	seed := seedFlags(fs)
	clients := fs.Int("clients", 32, "concurrent clients of the mixed load")
	duration := fs.Duration("duration", 3*time.Second, "how long the mixed load runs (when --ops is 0)")
	ops := fs.Int("ops", 0, "run exactly this many operations instead of --duration")
	orders := fs.Int("orders", 20000, "orders to publish and process through the worker after the mixed load (0: none)")
	var wc worker.Config
	var keep bool
	workerFlags(fs, &wc, nil, &keep)
	admin := fs.String("admin", "127.0.0.1:0", "`addr`ess of the live pools page (/pools, /pools.json), /healthz, /readyz and /metrics while the demo runs (port 0: any free one); empty: none")
	if err := parse(fs, args, &cfg); err != nil {
		return err
	}
	if *clients <= 0 {
		return usagef("--clients: must be positive")
	}
	if err := ensureDatabase(ctx, cfg); err != nil {
		return err
	}
	// The admin server is released on a stack of its own, after the app's,
	// so that the pools page shows the app's release report.
	adminRel := new(release.Stack)
	defer releaseAdmin(ctx, adminRel, log)
	a, err := openApp(ctx, cfg, openOpts{cache: true, broker: *orders > 0}, log)
	if err != nil {
		return err
	}
	defer a.release(ctx)
	var adm *adminServer
	if *admin != "" {
		if adm, err = serveAdmin(a, *admin, adminRel, stderr, log); err != nil {
			return err
		}
	}

	sum := demoSummary{Command: "demo", Backend: a.backend}
	if sum.Migrations, err = shop.Migrate(poolset.WithRepo(ctx, "migrations"), a.set.Primary().DB(), a.dialect); err != nil {
		return err
	}
	if sum.Seeded, err = a.shop.Seed(ctx, *seed); err != nil {
		return err
	}
	mix := shop.NewMix(a.shop, shop.MixConfig{Clients: *clients, Ops: *ops, Duration: *duration, Users: seed.Users, Products: seed.Products})
	stopProgress := progress(stderr, func() string {
		st := a.set.Stats()
		line := fmt.Sprintf("load: %d ops", mix.Ops())
		for _, p := range st {
			line += fmt.Sprintf(" · %s in use %d/%d waiting %d", p.Name, p.InUse, p.MaxOpen, p.Waiting)
		}
		return line
	})
	sum.Load = mix.Run(ctx)
	stopProgress()
	gen := orderGen{Prefix: fmt.Sprintf("demo-%d", time.Now().UnixNano()), Start: 1, Users: seed.Users, Products: seed.Products, UnknownEvery: 100}
	if *orders > 0 && ctx.Err() == nil {
		var done atomic.Int64
		stop := progress(stderr, func() string { return progressBar("load", done.Load(), int64(*orders)) })
		pub, err := publishOrders(ctx, a.broker.Publisher(), gen, *orders, 0, &done)
		stop()
		if err != nil {
			return err
		}
		sum.Published = &pub
		// The worker shuts down by the normal path once the queue is empty.
		wc.Logger = log
		empty := func(w *worker.Worker) bool {
			n, err := a.broker.Pending(ctx)
			return err == nil && n == 0 && w.Stats().InFlight == 0
		}
		ws, err := runWorker(ctx, nil, a, wc, adm, stderr, empty)
		if err != nil {
			return err
		}
		sum.Worker = &ws.Worker
	}
	if sum.Verify, err = verifyShop(ctx, a, gen, *orders); err != nil {
		return err
	}
	sum.Pools = a.set.Stats()
	if a.cache != nil {
		cs := a.cache.Stats()
		sum.Cache = &cs
	}
	report, relErr := a.release(ctx)
	adm.publish(report)
	sum.Release = report
	sum.OK = relErr == nil && sum.Verify.OK && sum.Load.Errors == 0 && ctx.Err() == nil && (sum.Worker == nil || sum.Worker.Abandoned == 0)
	if cfg.JSON {
		enc := json.NewEncoder(stdout)
		if err := enc.Encode(sum); err != nil {
			return err
		}
	} else {
		printDemo(stdout, sum)
	}
	err = demoErr(ctx, sum, relErr)
	if keep {
		adm.keepServing(ctx, stderr)
	}
	return err
}

// demoErr returns the error that sets the demo's exit code.
func demoErr(ctx context.Context, sum demoSummary, relErr error) error {
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("demo: interrupted")
	case sum.Load.Errors > 0:
		return fmt.Errorf("demo: %d operations failed, first: %v", sum.Load.Errors, sum.Load.FirstErrors)
	case !sum.Verify.OK:
		return fmt.Errorf("demo: verify failed: %+v", sum.Verify)
	case sum.Worker != nil && sum.Worker.Abandoned > 0:
		return &exitError{code: exitAbandoned, msg: fmt.Sprintf("demo: %d messages abandoned", sum.Worker.Abandoned)}
	case relErr != nil:
		return fmt.Errorf("demo: release: %w", relErr)
	}
	return nil
}

func printDemo(w io.Writer, s demoSummary) {
	l := s.Load
	fmt.Fprintf(w, "shop demo (%s): %d migrations applied, seeded %d users and %d products\n", s.Backend, s.Migrations, s.Seeded.Users, s.Seeded.Products)
	fmt.Fprintf(w, "load: %d clients, %d ops in %s = %.0f ops/s, p50 %s, p99 %s\n", l.Clients, l.Ops, l.Elapsed.Round(time.Millisecond), l.OpsPerSec, l.P50.Round(time.Microsecond), l.P99.Round(time.Microsecond))
	fmt.Fprintf(w, "      %d user reads, %d product reads, %d orders (%d accepted, %d rejected), %d errors\n", l.UserReads, l.ProductReads, l.Orders, l.Accepted, l.Rejected, l.Errors)
	if p := s.Published; p != nil {
		fmt.Fprintf(w, "published: %d orders in %s (%.0f/s): %s\n", p.Orders, p.Elapsed.Round(time.Millisecond), p.PerSec, p.stored())
	}
	if ws := s.Worker; ws != nil {
		fmt.Fprintf(w, "worker: received %d · acked %d (accepted %d, rejected %d, duplicate %d) · nak'ed %d · dead-lettered %d · abandoned %d · %.0f messages/s\n",
			ws.Received, ws.Acked, ws.Accepted, ws.Rejected, ws.Duplicates, ws.Naked, ws.DeadLettered, ws.Abandoned, ws.Rate)
	}
	printVerify(w, s.Verify)
	fmt.Fprintln(w, "\npools:")
	poolset.WriteTree(w, s.Pools)
	if s.Cache != nil {
		fmt.Fprintf(w, "redis %s\n└─ products   cache hits %d · misses %d · failures %d · outages %d\n", s.Cache.Address, s.Cache.Hits, s.Cache.Misses, s.Cache.Failures, s.Cache.Outages)
	}
	fmt.Fprintln(w, "\nrelease:")
	fmt.Fprint(w, s.Release.String())
}

// progress prints line() on w every 250 ms (overwriting in place on a
// terminal, one line a second otherwise) until the returned stop is
// called; stop waits for the printing goroutine to end.
func progress(w io.Writer, line func() string) (stop func()) {
	tty := false
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	every := time.Second
	if tty {
		every = 250 * time.Millisecond
	}
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-quit:
				if tty {
					fmt.Fprintf(w, "\r%s\033[K\n", line())
				}
				return
			case <-t.C:
				if tty {
					fmt.Fprintf(w, "\r%s\033[K", line())
				} else {
					fmt.Fprintln(w, line())
				}
			}
		}
	})
	var once sync.Once
	return func() { once.Do(func() { close(quit); wg.Wait() }) }
}
