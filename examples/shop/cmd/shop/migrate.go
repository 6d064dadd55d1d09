package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"

	"github.com/poolset/poolset"
	"github.com/poolset/poolset/examples/shop/shop"
	"github.com/poolset/poolset/release"
)

// seedFlags binds seed's flags to fs.
func seedFlags(fs *flag.FlagSet) *shop.SeedConfig {
	var c shop.SeedConfig
	fs.IntVar(&c.Users, "users", 1000, "users to seed (ids 1..N)")
	fs.IntVar(&c.Products, "products", 100, "products to seed (ids 1..N)")
	fs.Int64Var(&c.Stock, "stock", 1_000_000, "initial stock of each product")
	return &c
}

func cmdMigrate(ctx context.Context, args []string, stdout, stderr io.Writer, log *slog.Logger) error {
	var cfg config
	fs := newFlagSet("migrate", stdout, &cfg)
	if err := parse(fs, args, &cfg); err != nil {
		return err
	}
	if err := ensureDatabase(ctx, cfg); err != nil {
		return err
	}
	a, err := openApp(ctx, cfg, openOpts{}, log)
	if err != nil {
		return err
	}
	defer a.release(ctx)
	n, err := shop.Migrate(poolset.WithRepo(ctx, "migrations"), a.set.Primary().DB(), a.dialect)
	if err != nil {
		return err
	}
	report, err := a.release(ctx)
	if cfg.JSON {
		json.NewEncoder(stdout).Encode(map[string]any{"command": "migrate", "backend": a.backend, "applied": n, "release": report, "ok": err == nil})
	} else {
		fmt.Fprintf(stdout, "migrate (%s): %d migrations applied\n", a.backend, n)
	}
	return err
}

func cmdSeed(ctx context.Context, args []string, stdout, stderr io.Writer, log *slog.Logger) error {
	var cfg config
	fs := newFlagSet("seed", stdout, &cfg)
	sc := seedFlags(fs)
	if err := parse(fs, args, &cfg); err != nil {
		return err
	}
	if sc.Users <= 0 || sc.Products <= 0 || sc.Stock <= 0 {
		return usagef("seed: --users, --products and --stock must be positive")
	}
	res, report, err := migrateAndSeed(ctx, cfg, *sc, log)
	if report == nil {
		return err
	}
	backend := backendOf(cfg)
	if cfg.JSON {
		json.NewEncoder(stdout).Encode(map[string]any{"command": "seed", "backend": backend, "seeded": res, "release": report, "ok": err == nil})
	} else {
		fmt.Fprintf(stdout, "seed (%s): %d users and %d products stored (existing rows left as they were)\n", backend, res.Users, res.Products)
	}
	return err
}

// migrateAndSeed creates the MySQL database when needed, migrates and
// seeds it, and releases what it opened. The report is nil when it failed
// before the release.
func migrateAndSeed(ctx context.Context, cfg config, seed shop.SeedConfig, log *slog.Logger) (shop.SeedResult, *release.Report, error) {
	if err := ensureDatabase(ctx, cfg); err != nil {
		return shop.SeedResult{}, nil, err
	}
	a, err := openApp(ctx, cfg, openOpts{}, log)
	if err != nil {
		return shop.SeedResult{}, nil, err
	}
	defer a.release(ctx)
	if _, err := shop.Migrate(poolset.WithRepo(ctx, "migrations"), a.set.Primary().DB(), a.dialect); err != nil {
		return shop.SeedResult{}, nil, err
	}
	res, err := a.shop.Seed(ctx, seed)
	if err != nil {
		return res, nil, err
	}
	report, err := a.release(ctx)
	return res, report, err
}
