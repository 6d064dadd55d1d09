package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/poolset/poolset"
	"github.com/poolset/poolset/examples/shop/internal/latency"
	"github.com/poolset/poolset/examples/shop/shop"
)

// readsRow is one mode of the read benchmark.
type readsRow struct {
	Mode      string        `json:"mode"`
	Reads     int64         `json:"reads"`
	Errors    int64         `json:"errors"`
	OpsPerSec float64       `json:"reads_per_sec"`
	P50       time.Duration `json:"p50_ns"`
	P99       time.Duration `json:"p99_ns"`
	Served    string        `json:"served"`
}

// cmdBenchReads measures user reads by id on the primary alone, then on
// each prefix of the --replica list (1 replica, 2 replicas...), then the
// cost of read-your-writes: a user registered then read back at once.
func cmdBenchReads(ctx context.Context, args []string, stdout, stderr io.Writer, log *slog.Logger) error {
	var cfg config
	fs := newFlagSet("bench reads", stdout, &cfg)
	seed := seedFlags(fs)
	clients := fs.Int("clients", 32, "concurrent clients")
	duration := fs.Duration("duration", 5*time.Second, "how long each mode runs")
	if err := parse(fs, args, &cfg); err != nil {
		return err
	}
	if backendFor(cfg).dsn == "" || len(cfg.Replicas) == 0 {
		return usagef("bench reads: needs --mysql or --postgres, and at least one --replica (see 'poolset pair')")
	}
	if _, _, err := migrateAndSeed(ctx, cfg, *seed, log); err != nil {
		return err
	}
	var rows []readsRow
	run := func(mode string, replicas []string, ryw bool) error {
		c := cfg
		c.Replicas = replicas
		a, err := openApp(ctx, c, openOpts{}, log)
		if err != nil {
			return err
		}
		defer a.release(ctx)
		time.Sleep(300 * time.Millisecond) // let the health checks see the replicas caught up
		row := benchUserReads(ctx, a, *clients, *duration, seed.Users, ryw)
		row.Mode = mode
		var served []string
		for _, p := range a.set.Stats() {
			for _, r := range p.Repos {
				if r.Repo == "users" && r.Queries > 0 {
					served = append(served, fmt.Sprintf("%s %d", p.Name, r.Queries))
				}
			}
		}
		row.Served = fmt.Sprint(served)
		rows = append(rows, row)
		_, err = a.release(ctx)
		return err
	}
	if err := run("primary only", nil, false); err != nil {
		return err
	}
	for i := range cfg.Replicas {
		if err := run(fmt.Sprintf("%d replica(s)", i+1), cfg.Replicas[:i+1], false); err != nil {
			return err
		}
	}
	if err := run("read-your-writes", cfg.Replicas, true); err != nil {
		return err
	}
	if cfg.JSON {
		return json.NewEncoder(stdout).Encode(map[string]any{"command": "bench reads", "clients": *clients, "rows": rows})
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "MODE\tREADS/S\tP50\tP99\tERRORS\tSERVED BY (queries)")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%.0f\t%s\t%s\t%d\t%s\n", r.Mode, r.OpsPerSec, r.P50.Round(time.Microsecond), r.P99.Round(time.Microsecond), r.Errors, r.Served)
	}
	return tw.Flush()
}

// benchUserReads runs clients reading users by id for d. With ryw each
// operation registers a user, then reads it back under ReadYourWrites.
func benchUserReads(ctx context.Context, a *app, clients int, d time.Duration, users int, ryw bool) readsRow {
	var reads, errs atomic.Int64
	lat := make([][]time.Duration, clients)
	deadline := time.Now().Add(d)
	start := time.Now()
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(c), 7))
			for n := 0; time.Now().Before(deadline) && ctx.Err() == nil; n++ {
				t := time.Now()
				var err error
				if ryw {
					rctx := poolset.ReadYourWrites(ctx)
					id := int64(3_000_000_000 + c*10_000_000 + n)
					if err = a.shop.Users.Register(rctx, shop.User{ID: id, Email: fmt.Sprintf("b%d@example.com", id), Name: "b"}); err == nil {
						_, err = a.shop.Users.Get(rctx, id)
					}
				} else {
					_, err = a.shop.Users.Get(ctx, 1+rng.Int64N(int64(users)))
				}
				lat[c] = append(lat[c], time.Since(t))
				reads.Add(1)
				if err != nil {
					errs.Add(1)
				}
			}
		})
	}
	wg.Wait()
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	slices.Sort(all)
	el := time.Since(start)
	return readsRow{Reads: reads.Load(), Errors: errs.Load(), OpsPerSec: float64(reads.Load()) / el.Seconds(),
		P50: latency.Percentile(all, 50), P99: latency.Percentile(all, 99)}
}
