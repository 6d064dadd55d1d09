package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/poolset/poolset"
	"github.com/poolset/poolset/examples/shop/shop"
	"github.com/poolset/poolset/release"
)

// benchRow is one mode of the sharing benchmark.
type benchRow struct {
	Mode      string         `json:"mode"`
	Pools     int            `json:"pools"`
	MaxOpen   int            `json:"max_open_total"`
	OpsPerSec float64        `json:"ops_per_sec"`
	P50       time.Duration  `json:"p50_ns"`
	P99       time.Duration  `json:"p99_ns"`
	PeakConns int            `json:"peak_server_connections"`
	Errors    int64          `json:"errors"`
	Load      shop.MixResult `json:"load"`
}

func cmdBenchSharing(ctx context.Context, args []string, stdout, stderr io.Writer, log *slog.Logger) error {
	var cfg config
	fs := newFlagSet("bench sharing", stdout, &cfg)
	seed := seedFlags(fs)
	clients := fs.Int("clients", 32, "concurrent clients")
	duration := fs.Duration("duration", 10*time.Second, "how long each mode runs")
	if err := parse(fs, args, &cfg); err != nil {
		return err
	}
	b := backendFor(cfg)
	if b.dsn == "" {
		return usagef("bench sharing: needs --mysql or --postgres (the server's connection count is the point)")
	}
	if _, _, err := migrateAndSeed(ctx, cfg, *seed, log); err != nil {
		return err
	}
	counter, err := b.newConnCounter()
	if err != nil {
		return err
	}
	defer counter.Close()

	var rows []benchRow
	for _, mode := range []string{"shared", "per-repository"} {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		row, err := benchMode(ctx, cfg, mode, *clients, *duration, *seed, counter, log)
		if err != nil {
			return err
		}
		rows = append(rows, row)
	}
	if cfg.JSON {
		return json.NewEncoder(stdout).Encode(map[string]any{"command": "bench sharing", "clients": *clients, "duration_ns": *duration, "rows": rows})
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "MODE\tPOOLS\tMAX OPEN\tOPS/S\tP50\tP99\tPEAK SERVER CONNS\tERRORS\n")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.0f\t%s\t%s\t%d\t%d\n", r.Mode, r.Pools, r.MaxOpen, r.OpsPerSec, r.P50.Round(time.Microsecond), r.P99.Round(time.Microsecond), r.PeakConns, r.Errors)
	}
	tw.Flush()
	if len(rows) == 2 && rows[1].OpsPerSec > 0 && rows[1].PeakConns > 0 {
		fmt.Fprintf(stdout, "shared / per-repository: %.0f%% of the throughput with %.0f%% of the connections\n",
			100*rows[0].OpsPerSec/rows[1].OpsPerSec, 100*float64(rows[0].PeakConns)/float64(rows[1].PeakConns))
	}
	return nil
}

// benchMode runs the mixed load with one shared primary pool ("shared") or
// one pool per repository ("per-repository"), sampling the server's count
// of connections to the database every 10 ms.
func benchMode(ctx context.Context, cfg config, mode string, clients int, d time.Duration, seed shop.SeedConfig, counter *connCounter, log *slog.Logger) (benchRow, error) {
	cfg.Replicas = nil // users read from the primary too: only the sharing differs
	pc, err := setConfig(cfg, log)
	if err != nil {
		return benchRow{}, err
	}
	var rel release.Stack
	defer rel.Release(context.WithoutCancel(ctx))
	open := func(name string) (*poolset.Set, error) {
		c := pc
		c.Primary.Name = name
		s, err := poolset.Open(ctx, c)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", backendFor(cfg).flag, err)
		}
		rel.AddTimeout("set "+name, s.CloseTimeout(), s.Close)
		return s, nil
	}
	row := benchRow{Mode: mode}
	var sh *shop.Shop
	if mode == "shared" {
		s, err := open("primary")
		if err != nil {
			return row, err
		}
		sh = shop.New(s, dialectFor(cfg), nil)
		row.Pools, row.MaxOpen = 1, cfg.MaxOpen
	} else {
		var hs []*poolset.Handle
		for _, repo := range []string{"users", "products", "orders"} {
			s, err := open(repo)
			if err != nil {
				return row, err
			}
			hs = append(hs, s.Handle(repo))
		}
		sh = shop.Compose(hs[0], hs[1], hs[2], dialectFor(cfg), nil)
		row.Pools, row.MaxOpen = 3, 3*cfg.MaxOpen
	}
	// Sample the server's view until the load ends.
	quit := make(chan struct{})
	var wg sync.WaitGroup
	var peak int
	wg.Go(func() {
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
				if n, err := counter.count(ctx); err == nil && n > peak {
					peak = n
				}
			}
		}
	})
	mix := shop.NewMix(sh, shop.MixConfig{Clients: clients, Duration: d, Users: seed.Users, Products: seed.Products})
	res := mix.Run(ctx)
	close(quit)
	wg.Wait()
	row.OpsPerSec, row.P50, row.P99, row.PeakConns, row.Errors, row.Load = res.OpsPerSec, res.P50, res.P99, peak, res.Errors, res
	if _, err := rel.Release(context.WithoutCancel(ctx)); err != nil {
		return row, fmt.Errorf("bench %s: release: %w", mode, err)
	}
	return row, nil
}
