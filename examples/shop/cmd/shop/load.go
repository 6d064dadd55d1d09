package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/poolset/poolset/examples/shop/worker"
	"github.com/poolset/poolset/release"
)

// loadFlags binds the flags of the orders load publishes.
func loadFlags(fs *flag.FlagSet) (*orderGen, *int) {
	g := &orderGen{}
	orders := fs.Int("orders", 20000, "orders to publish")
	fs.StringVar(&g.Prefix, "prefix", "o", "order ids are PREFIX-N")
	fs.IntVar(&g.Start, "start", 1, "the first N of the order ids")
	fs.IntVar(&g.UnknownEvery, "unknown-every", 100, "every k-th order comes from an unknown user (0: none)")
	fs.IntVar(&g.RegisterEvery, "register-every", 0, "every k-th order comes from a user whose registration is published just before it (0: none)")
	return g, orders
}

// loadResult is what load prints.
type loadResult struct {
	Orders        int `json:"orders"`
	Registrations int `json:"registrations"`
	// Messages is Orders + Registrations: the messages published.
	Messages int `json:"messages"`
	// Stored is the messages the broker confirmed it stored.
	Stored int `json:"stored"`
	// Duplicates is the messages the broker confirmed but dropped as
	// duplicates of ids it already held: on NATS, ids published within
	// the stream's duplicate window (2 minutes by default).
	Duplicates int           `json:"duplicates"`
	Elapsed    time.Duration `json:"elapsed_ns"`
	PerSec     float64       `json:"orders_per_sec"`
}

// stored says what the broker did with the messages of r.
func (r loadResult) stored() string {
	if r.Duplicates == 0 && r.Stored == r.Messages {
		return fmt.Sprintf("all %d messages stored, each confirmed by the broker", r.Messages)
	}
	return fmt.Sprintf("%d of %d messages stored, %d dropped by the broker as duplicates of ids it already held (publish with another --prefix or --start for new orders)",
		r.Stored, r.Messages, r.Duplicates)
}

func cmdLoad(ctx context.Context, args []string, stdout, stderr io.Writer, log *slog.Logger) error {
	var cfg config
	fs := newFlagSet("load", stdout, &cfg)
	g, orders := loadFlags(fs)
	seed := seedFlags(fs)
	rate := fs.Float64("rate", 0, "orders per second (0: as fast as the broker confirms)")
	if err := parse(fs, args, &cfg); err != nil {
		return err
	}
	if *orders <= 0 {
		return usagef("--orders: must be positive")
	}
	g.Users, g.Products = seed.Users, seed.Products
	var rel release.Stack
	defer rel.Release(context.WithoutCancel(ctx))
	b, err := openBroker(ctx, cfg, &rel, log)
	if err != nil {
		return err
	}
	var done atomic.Int64
	stop := progress(stderr, func() string { return progressBar("load", done.Load(), int64(*orders)) })
	res, err := publishOrders(ctx, b.Publisher(), *g, *orders, *rate, &done)
	stop()
	if err != nil {
		return err
	}
	if _, err := rel.Release(context.WithoutCancel(ctx)); err != nil {
		return fmt.Errorf("load: release: %w", err)
	}
	if cfg.JSON {
		return json.NewEncoder(stdout).Encode(map[string]any{"command": "load", "broker": b.Address(), "result": res})
	}
	fmt.Fprintf(stdout, "load: published %d orders and %d registrations to %s in %s (%.0f orders/s): %s\n",
		res.Orders, res.Registrations, b.Address(), res.Elapsed.Round(time.Millisecond), res.PerSec, res.stored())
	return nil
}

// publishBatch is the messages published, and confirmed, at a time.
const publishBatch = 1000

// publishOrders publishes orders Start..Start+count-1 of g (with their
// registrations), at most rate a second when rate > 0, counting in done.
// The result counts what the broker stored and what it dropped as
// duplicates, up to an error too.
func publishOrders(ctx context.Context, pub worker.Publisher, g orderGen, count int, rate float64, done *atomic.Int64) (loadResult, error) {
	start := time.Now()
	res := loadResult{}
	batch := make([]worker.Message, 0, publishBatch+1)
	sent := 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		r, err := pub.Publish(ctx, batch)
		res.Stored += r.Stored
		res.Duplicates += r.Duplicates
		if err != nil {
			return fmt.Errorf("load: publish: %w", err)
		}
		batch = batch[:0]
		done.Store(int64(sent))
		return nil
	}
	step := publishBatch
	if rate > 0 {
		step = max(1, min(publishBatch, int(rate/10)))
	}
	for n := g.Start; n < g.Start+count; n++ {
		msgs, reg := g.messages(n)
		batch = append(batch, msgs...)
		res.Messages += len(msgs)
		sent++
		res.Orders++
		if reg {
			res.Registrations++
		}
		if len(batch) >= step {
			if err := flush(); err != nil {
				return res, err
			}
			if rate > 0 {
				due := start.Add(time.Duration(float64(sent) / rate * float64(time.Second)))
				select {
				case <-ctx.Done():
					return res, ctx.Err()
				case <-time.After(time.Until(due)):
				}
			}
		}
	}
	if err := flush(); err != nil {
		return res, err
	}
	res.Elapsed = time.Since(start)
	res.PerSec = float64(res.Orders) / res.Elapsed.Seconds()
	return res, nil
}

// progressBar renders done of total as a bar.
func progressBar(what string, done, total int64) string {
	const width = 30
	filled := 0
	if total > 0 {
		filled = int(width * done / total)
	}
	bar := make([]byte, width)
	for i := range bar {
		bar[i] = '.'
		if i < filled {
			bar[i] = '#'
		}
	}
	return fmt.Sprintf("%s [%s] %d/%d", what, bar, done, total)
}
