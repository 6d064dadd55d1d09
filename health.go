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
	checker    *sql.DB // one connection of the pool's MaxOpen, for the check alone
	started    bool    // the first check sets the state without counting a move
	ok         atomic.Bool
	reason     atomic.Pointer[string]
	leaves     atomic.Int64
	rejoins    atomic.Int64
	quit, done chan struct{}
	interval   time.Duration
	check      func(ctx context.Context, conn *sql.Conn) error
}

// startHealth runs p's Health check once (so that a replica down at start
// starts out of the rotation) and then every HealthInterval.
func (p *Pool) startHealth(ctx context.Context) {
	h := &health{
		checker:  sql.OpenDB(p.cfg.Connector),
		quit:     make(chan struct{}),
		done:     make(chan struct{}),
		interval: p.cfg.HealthInterval,
		check:    p.cfg.Health,
	}
	if h.interval <= 0 {
		h.interval = DefaultHealthInterval
	}
	h.checker.SetMaxOpenConns(1)
	h.checker.SetMaxIdleConns(1)
	h.ok.Store(true)
	p.health = h
	p.runCheck(ctx)
	h.started = true
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

// runCheck runs the Health check once on the checker's connection, within
// two intervals, and moves
// the pool in or out of the rotation, logging and counting a change.
func (p *Pool) runCheck(ctx context.Context) {
	h := p.health
	ctx, cancel := context.WithTimeout(ctx, 2*h.interval)
	defer cancel()
	err := func() error {
		conn, err := h.checker.Conn(ctx)
		if err != nil {
			return err
		}
		defer conn.Close()
		return h.check(ctx, conn)
	}()
	if err == nil {
		if !h.ok.Swap(true) && h.started {
			h.rejoins.Add(1)
			h.reason.Store(nil)
			p.log.Info("poolset: read pool back in the rotation", "pool", p.cfg.Name)
		}
		return
	}
	p.markDownReason(err.Error(), h.started)
}

// markDown takes p out of the rotation after a read on it met err, a
// broken connection, until its next health check passes. It is a no-op
// for a pool without a health check.
func (p *Pool) markDown(err error) {
	if p.health != nil {
		p.markDownReason(err.Error(), true)
	}
}

func (p *Pool) markDownReason(reason string, count bool) {
	h := p.health
	h.reason.Store(&reason)
	if h.ok.Swap(false) && count {
		h.leaves.Add(1)
		p.log.Warn("poolset: read pool out of the rotation; its reads go elsewhere", "pool", p.cfg.Name, "reason", reason)
	}
}

// stopHealth ends the checker goroutine, waits for it, and closes the
// checker's connection. It is a no-op for a pool without a Health check.
func (p *Pool) stopHealth() {
	if p.health == nil {
		return
	}
	close(p.health.quit)
	<-p.health.done
	p.health.checker.Close()
}

// usable reports whether p may take reads: open, and healthy when it has
// a Health check.
func (p *Pool) usable() bool {
	return !p.closed.Load() && (p.health == nil || p.health.ok.Load())
}
