package poolset

import (
	"context"
	"database/sql"
	"sync/atomic"
	"time"
)

// DefaultHealthInterval is how often a read pool's Health check runs.
const DefaultHealthInterval = 250 * time.Millisecond

// health tracks whether a read pool is in the rotation. Its checker
// goroutine starts in Open and ends in the pool's Close, before the pool
// closes its connections.
type health struct {
	ok          atomic.Bool
	reason      atomic.Pointer[string]
	leaves      atomic.Int64
	rejoins     atomic.Int64
	quit, done  chan struct{}
	interval    time.Duration
	check       func(ctx context.Context, conn *sql.Conn) error
	transitions func(ok bool, reason string)
}

// startHealth runs p's Health check once (so that a replica down at start
// starts out of the rotation) and then every HealthInterval.
func (p *Pool) startHealth(ctx context.Context) {
	h := &health{
		quit:     make(chan struct{}),
		done:     make(chan struct{}),
		interval: p.cfg.HealthInterval,
		check:    p.cfg.Health,
	}
	if h.interval <= 0 {
		h.interval = DefaultHealthInterval
	}
	h.ok.Store(true)
	p.health = h
	p.runCheck(ctx)
	go func() {
		defer close(h.done)
		t := time.NewTicker(h.interval)
		defer t.Stop()
		for {
			select {
			case <-h.quit:
				return
			case <-t.C:
				p.runCheck(context.Background())
			}
		}
	}()
}

// runCheck runs the Health check once on one of the pool's connections,
// within two intervals, and moves
// the pool in or out of the rotation, logging and counting a change.
func (p *Pool) runCheck(ctx context.Context) {
	h := p.health
	ctx, cancel := context.WithTimeout(ctx, 2*h.interval)
	defer cancel()
	err := func() error {
		// The check borrows one of the pool's own connections, so that the
		// pool never opens more than MaxOpen.
		conn, err := p.db.Conn(ctx)
		if err != nil {
			return err
		}
		defer conn.Close()
		return h.check(ctx, conn)
	}()
	if err != nil && ctx.Err() != nil && p.inUse.Load() >= int64(p.cfg.MaxOpen) {
		return // every connection is busy serving reads: no news, keep the state
	}
	if err == nil {
		if !h.ok.Swap(true) {
			h.rejoins.Add(1)
			h.reason.Store(nil)
			p.log.Info("poolset: read pool back in the rotation", "pool", p.cfg.Name)
		}
		return
	}
	reason := err.Error()
	h.reason.Store(&reason)
	if h.ok.Swap(false) {
		h.leaves.Add(1)
		p.log.Warn("poolset: read pool out of the rotation; its reads go elsewhere", "pool", p.cfg.Name, "reason", reason)
	}
}

// stopHealth ends the checker goroutine and waits for it. It is a no-op for a pool without a Health check.
func (p *Pool) stopHealth() {
	if p.health == nil {
		return
	}
	close(p.health.quit)
	<-p.health.done
}

// usable reports whether p may take reads: open, and healthy when it has
// a Health check.
func (p *Pool) usable() bool {
	return !p.closed.Load() && (p.health == nil || p.health.ok.Load())
}
