package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/poolset/poolset"
	"github.com/poolset/poolset/examples/shop/productcache"
	"github.com/poolset/poolset/examples/shop/shop"
	"github.com/poolset/poolset/examples/shop/worker"
	"github.com/poolset/poolset/release"
)

// releaseTimeout bounds the whole release at the end of a command.
const releaseTimeout = 30 * time.Second

// app is the shop service wired: the pool set (primary, read pools), the
// Redis cache when configured, and the repositories on them.
type app struct {
	set     *poolset.Set
	shop    *shop.Shop
	dialect shop.Dialect
	cache   *productcache.ProductCache // nil without --redis
	backend string                     // "mysql", "postgres" or "sqlite"
	broker  worker.Broker              // nil unless opened with openOpts.broker
	rel     *release.Stack             // every release, in acquisition order
}

// dialectFor returns the shop dialect of the configured backend.
func dialectFor(cfg config) shop.Dialect { return backendFor(cfg).dialect() }

// openOpts says what openApp opens besides the pool set.
type openOpts struct {
	cache  bool // the Redis cache, when --redis is set
	broker bool // the broker connection (--broker, or the embedded NATS server)
}

// openApp opens, in this order, the broker connection (when opts.broker),
// the pool set and the Redis cache (when opts.cache and --redis), and
// registers each release in one stack the moment it is acquired, so that
// release runs Redis, the pools, then the broker, as the seed does. A Redis
// that does not answer is not an error: the cache starts down, openApp
// logs a warning naming --redis (password redacted), reads go to the
// database, and the cache is used from Redis's first answer on. If a step
// fails, what was opened is released and the error names the setting that
// failed.
func openApp(ctx context.Context, cfg config, opts openOpts, log *slog.Logger) (*app, error) {
	pc, err := setConfig(cfg, log)
	if err != nil {
		return nil, err
	}
	a := &app{dialect: dialectFor(cfg), backend: backendOf(cfg), rel: new(release.Stack)}
	fail := func(err error) (*app, error) {
		a.release(ctx)
		return nil, err
	}
	if opts.broker {
		if a.broker, err = openBroker(ctx, cfg, a.rel, log); err != nil {
			return fail(err)
		}
	}
	set, err := poolset.Open(ctx, pc) // on error it has closed what it opened
	if err != nil {
		return fail(fmt.Errorf("%s: %w", backendFor(cfg).flag, err))
	}
	a.set = set
	a.rel.AddTimeout("pools", set.CloseTimeout(), set.Close)
	var cache shop.ProductCache
	if opts.cache && cfg.Redis != "" {
		// The cache is optional: a Redis that is down costs misses, not
		// the start. The client connects when Redis answers.
		rc, err := productcache.New(productcache.Options{URL: cfg.Redis})
		if err != nil {
			return fail(usagef("--redis: %v", err))
		}
		a.rel.Add("redis", func(context.Context) error { return rc.Close() })
		a.cache = productcache.NewProductCache(rc, 0, log)
		cache = a.cache
		if err := a.cache.Ping(ctx); err != nil {
			log.Warn("--redis: the cache does not answer; starting without it, reading from the database until Redis answers", "err", err)
		}
	}
	a.shop = shop.New(set, a.dialect, cache)
	return a, nil
}

// backendOf names the configured backend: "mysql", "postgres" or
// "sqlite".
func backendOf(cfg config) string { return backendFor(cfg).name }

// release releases everything the app opened, within releaseTimeout, even
// when ctx is already cancelled (by a signal). It is idempotent.
func (a *app) release(ctx context.Context) (*release.Report, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer cancel()
	return a.rel.Release(ctx)
}
