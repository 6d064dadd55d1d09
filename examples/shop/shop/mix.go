package shop

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/poolset/poolset/examples/shop/internal/latency"
)

// MixConfig describes a mixed load through the three repositories: 50%
// user reads by id (read pool), 30% product detail reads (cache, else
// primary), 20% order placements of 1-3 items of quantity 1-5 (one
// transaction on the primary; about 1% from unknown users, so rejected).
type MixConfig struct {
	// Clients is the number of concurrent clients. Default: 32.
	Clients int
	// Ops is the total number of operations; when 0 the load runs for
	// Duration.
	Ops int
	// Duration bounds the run when Ops is 0. Default: 3 s.
	Duration time.Duration
	// Users and Products are the id ranges to draw from, as seeded.
	// Default: 1,000 and 100.
	Users, Products int
	// OrderPrefix starts every order id; ids are OrderPrefix-N. Default: a
	// random prefix, so that runs do not collide.
	OrderPrefix string
	// Seed seeds the random draws; 0 picks one.
	Seed uint64
}

// MixResult is what a Mix did, with latencies across all operations.
type MixResult struct {
	Clients      int           `json:"clients"`
	Ops          int64         `json:"ops"`
	UserReads    int64         `json:"user_reads"`
	ProductReads int64         `json:"product_reads"`
	Orders       int64         `json:"orders"`
	Accepted     int64         `json:"accepted"`
	Rejected     int64         `json:"rejected"`
	Errors       int64         `json:"errors"`
	FirstErrors  []string      `json:"first_errors,omitempty"`
	Elapsed      time.Duration `json:"elapsed_ns"`
	OpsPerSec    float64       `json:"ops_per_sec"`
	P50          time.Duration `json:"p50_ns"`
	P99          time.Duration `json:"p99_ns"`
}

// Mix runs a mixed load. Its counters may be read while it runs.
type Mix struct {
	shop *Shop
	cfg  MixConfig

	ops, userReads, productReads, orders, accepted, rejected, errs atomic.Int64

	mu          sync.Mutex
	firstErrors []string
}

// NewMix returns a Mix of cfg over s.
func NewMix(s *Shop, cfg MixConfig) *Mix {
	if cfg.Clients <= 0 {
		cfg.Clients = 32
	}
	if cfg.Duration <= 0 {
		cfg.Duration = 3 * time.Second
	}
	if cfg.Users <= 0 {
		cfg.Users = 1000
	}
	if cfg.Products <= 0 {
		cfg.Products = 100
	}
	if cfg.Seed == 0 {
		cfg.Seed = rand.Uint64()
	}
	if cfg.OrderPrefix == "" {
		cfg.OrderPrefix = fmt.Sprintf("mix-%08x", uint32(cfg.Seed))
	}
	return &Mix{shop: s, cfg: cfg}
}

// Ops returns the operations finished so far.
func (m *Mix) Ops() int64 { return m.ops.Load() }

// Run runs the load until Ops operations are done, Duration passes, or ctx
// is done, and returns what it did. Operations in flight when Duration
// passes finish; ctx cancels them. It blocks until every client has
// stopped; a failed operation is counted, not returned.
func (m *Mix) Run(ctx context.Context) MixResult {
	// The end of the run stops new operations but never cancels one in
	// flight: a cancelled query makes the driver cut its connection, which
	// the server counts as an aborted client.
	var deadline time.Time
	if m.cfg.Ops == 0 {
		deadline = time.Now().Add(m.cfg.Duration)
	}
	var next atomic.Int64
	lat := make([][]time.Duration, m.cfg.Clients)
	start := time.Now()
	var wg sync.WaitGroup
	for c := range m.cfg.Clients {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(m.cfg.Seed, uint64(c)))
			for ctx.Err() == nil && (deadline.IsZero() || time.Now().Before(deadline)) {
				n := next.Add(1)
				if m.cfg.Ops > 0 && n > int64(m.cfg.Ops) {
					return
				}
				t := time.Now()
				if !m.one(ctx, rng, n) {
					continue
				}
				lat[c] = append(lat[c], time.Since(t))
				m.ops.Add(1)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	slices.Sort(all)
	r := MixResult{
		Clients: m.cfg.Clients, Ops: m.ops.Load(), UserReads: m.userReads.Load(), ProductReads: m.productReads.Load(),
		Orders: m.orders.Load(), Accepted: m.accepted.Load(), Rejected: m.rejected.Load(), Errors: m.errs.Load(),
		Elapsed: elapsed, P50: latency.Percentile(all, 50), P99: latency.Percentile(all, 99),
	}
	if elapsed > 0 {
		r.OpsPerSec = float64(r.Ops) / elapsed.Seconds()
	}
	m.mu.Lock()
	r.FirstErrors = slices.Clone(m.firstErrors)
	m.mu.Unlock()
	return r
}

// one runs operation n and reports whether it counts (it was not cut short
// by the end of the run).
func (m *Mix) one(ctx context.Context, rng *rand.Rand, n int64) bool {
	var err error
	switch x := rng.IntN(100); {
	case x < 50:
		_, err = m.shop.Users.Get(ctx, 1+rng.Int64N(int64(m.cfg.Users)))
		if err == nil || errors.Is(err, ErrUserNotFound) {
			m.userReads.Add(1)
			err = nil
		}
	case x < 80:
		_, err = m.shop.Products.Details(ctx, 1+rng.Int64N(int64(m.cfg.Products)))
		if err == nil {
			m.productReads.Add(1)
		}
	default:
		// About 1% of orders come from a user who does not exist, so that
		// some are rejected.
		o := Order{ID: fmt.Sprintf("%s-%d", m.cfg.OrderPrefix, n), UserID: 1 + rng.Int64N(int64(m.cfg.Users)+int64(m.cfg.Users)/100)}
		for range 1 + rng.IntN(3) {
			o.Items = append(o.Items, Item{ProductID: 1 + rng.Int64N(int64(m.cfg.Products)), Qty: 1 + rng.Int64N(5)})
		}
		var p Placed
		p, err = m.shop.PlaceOrder(ctx, o)
		if err == nil {
			m.orders.Add(1)
			if p.Order.Status == Accepted {
				m.accepted.Add(1)
			} else {
				m.rejected.Add(1)
			}
		}
	}
	if err != nil {
		if ctx.Err() != nil {
			return false
		}
		m.errs.Add(1)
		m.mu.Lock()
		if len(m.firstErrors) < 5 {
			m.firstErrors = append(m.firstErrors, err.Error())
		}
		m.mu.Unlock()
	}
	return true
}
