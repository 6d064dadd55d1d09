package poolset

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// healthCheckTimeout bounds one Health check, or four intervals when that
// is longer. A check that merely runs slow never gets there: after two
// intervals its pool leaves the rotation while the check goes on, and the
// next check that answers within two intervals brings it back. Cancelling
// a query closes its connection without a goodbye (the server counts an
// aborted client), so only a server that stays silent this long, hung or
// gone, has its check connection cut.
const healthCheckTimeout = 5 * time.Second

// health tracks whether a read pool is in the rotation. Its checker
// goroutine starts in Open and ends in the pool's Close, before the pool
// closes its connections.
type health struct {
	checker  *sql.DB // one connection of the pool's MaxOpen, for the check alone
	ok       atomic.Bool
	reason   atomic.Pointer[string]
	leaves   atomic.Int64
	rejoins  atomic.Int64
	quit     chan struct{}      // closed by stopHealth: no check after the one running
	cancel   context.CancelFunc // cancels the running check
	done     chan struct{}      // closed when the checker goroutine has returned
	interval time.Duration
	check    HealthCheck
}

// startHealth starts p's checker goroutine, which runs the Health check at
// once and then every HealthInterval. It returns once the first check has
// passed or failed, or has taken two intervals (the pool then starts out
// of the rotation and joins when the check passes), or ctx is done.
func (p *Pool) startHealth(ctx context.Context) {
	hctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	h := &health{
		checker:  sql.OpenDB(p.cfg.Connector),
		quit:     make(chan struct{}),
		cancel:   cancel,
		done:     make(chan struct{}),
		interval: p.cfg.HealthInterval,
		check:    p.cfg.Health,
	}
	h.checker.SetMaxOpenConns(1)
	h.checker.SetMaxIdleConns(1)
	h.ok.Store(true)
	p.health = h
	settled := make(chan struct{})
	go func() {
		defer close(h.done)
		p.runCheck(hctx, func() { close(settled) })
		t := time.NewTicker(h.interval)
		defer t.Stop()
		for {
			select {
			case <-h.quit:
				return
			case <-t.C:
				p.runCheck(hctx, nil)
			}
		}
	}()
	select {
	case <-settled:
	case <-ctx.Done():
		// Not checked yet: out of the rotation until a check passes.
		p.markDownReason("health check: not answered before Open's context ended: "+ctx.Err().Error(), false)
	}
}

// runCheck runs the Health check once on the checker's connection and
// moves the pool in or out of the rotation, logging and counting a change.
// If the check has not answered after two intervals the pool leaves the
// rotation at once; the check goes on, up to healthCheckTimeout, and
// counts as failed even if it passes, so that a server that answers slowly
// stays out instead of flapping. The first check is given settled, called
// once the starting state is known; it sets that state without counting
// or logging a move.
func (p *Pool) runCheck(ctx context.Context, settled func()) {
	h := p.health
	first := settled != nil
	slowAfter := 2 * h.interval
	ctx, cancel := context.WithTimeout(ctx, max(healthCheckTimeout, 2*slowAfter))
	defer cancel()
	var (
		mu    sync.Mutex
		ended bool // the check returned: the timer must not move the state
		slow  bool // the timer took the pool out
	)
	start := time.Now()
	timer := time.AfterFunc(slowAfter, func() {
		mu.Lock()
		defer mu.Unlock()
		if ended {
			return
		}
		slow = true
		p.markDownReason(fmt.Sprintf("health check: no answer within %s", slowAfter), !first)
		if first {
			settled()
		}
	})
	err := func() error {
		conn, err := h.checker.Conn(ctx)
		if err != nil {
			return err
		}
		defer conn.Close()
		return h.check.Check(ctx, conn)
	}()
	timer.Stop()
	mu.Lock()
	defer mu.Unlock()
	ended = true
	if err == nil && slow {
		err = fmt.Errorf("health check: answered after %s, over %s", time.Since(start).Round(time.Millisecond), slowAfter)
	}
	if err == nil {
		if !h.ok.Swap(true) && !first {
			h.rejoins.Add(1)
			h.reason.Store(nil)
			p.log.Info("poolset: read pool back in the rotation", "pool", p.cfg.Name)
		}
	} else {
		p.markDownReason(err.Error(), !first)
	}
	if first && !slow {
		settled()
	}
}

// markDown takes p out of the rotation after a read on it met err, a
// broken connection, until its next health check passes. It is a no-op
// for a pool without a health check.
func (p *Pool) markDown(err error) {
	if p.health != nil {
		p.markDownReason(err.Error(), true)
	}
}

// markDownReason takes the pool out of the rotation for reason (its
// password, should a driver's error quote a DSN, shown as ***: the reason
// goes to the log, the stats, the tree and whatever shows them).
func (p *Pool) markDownReason(reason string, count bool) {
	h := p.health
	reason = Redact(reason)
	h.reason.Store(&reason)
	if h.ok.Swap(false) && count {
		h.leaves.Add(1)
		p.log.Warn("poolset: read pool out of the rotation; its reads go elsewhere", "pool", p.cfg.Name, "reason", reason)
	}
}

// stopHealth ends the checker goroutine and waits for it, then closes the
// checker's connection. A check under way gets two intervals to finish,
// so that its connection closes cleanly, and is cancelled after that or
// when ctx is done. It is a no-op for a pool without a Health check.
func (p *Pool) stopHealth(ctx context.Context) {
	h := p.health
	if h == nil {
		return
	}
	close(h.quit)
	t := time.NewTimer(2 * h.interval)
	defer t.Stop()
	select {
	case <-h.done:
	case <-t.C:
	case <-ctx.Done():
	}
	h.cancel()
	<-h.done
	h.checker.Close()
}

// usable reports whether p may take reads: open, and healthy when it has
// a Health check.
func (p *Pool) usable() bool {
	return !p.closed.Load() && (p.health == nil || p.health.ok.Load())
}
