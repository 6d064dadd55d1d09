package poolset

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// The close path: a set closes its pools, a pool its connections. A set is
// closed once, by its owner (a service's release stack, a defer); nothing
// else in the package closes a pool.

// Close closes the set: it stops the leak watch, then closes the read
// pools, the last configured first, and then the primary, each as
// Pool.Close says, so that reads still running while the read pools close
// go to the primary. The error joins the pools' errors, each naming its
// pool and what was still held. Close blocks for at most CloseTimeout when
// the servers take the goodbyes promptly; once ctx is done it waits no
// more for lent connections or health checks, and goes on to close every
// connection before it returns. It is idempotent and safe for concurrent
// use: a second call, or one made while the first runs, waits for the first
// and returns its result. Statements on the set's handles after Close fail
// with ErrPoolClosed.
func (s *Set) Close(ctx context.Context) error {
	s.closeOnce.Do(func() { s.closeErr = s.close(ctx) })
	return s.closeErr
}

// close closes what the set opened, which is all of it once Open has
// returned the set, and part of it when Open fails half-way: the leak
// watch if started, the read pools opened, the primary if opened.
func (s *Set) close(ctx context.Context) error {
	if s.leaks != nil {
		s.leaks.stop()
	}
	var errs []error
	for i := len(s.reads) - 1; i >= 0; i-- {
		errs = append(errs, s.reads[i].Close(ctx))
	}
	if s.primary != nil {
		errs = append(errs, s.primary.Close(ctx))
	}
	return errors.Join(errs...)
}

// CloseTimeout returns the longest Close takes while the servers take the
// connections' goodbyes promptly: for each pool, two HealthIntervals (read
// pools with a Health check), CloseWait, forceCloseWait (100 ms) for each
// of its MaxOpen connections, and closeConnsTime (1 s) for the driver to
// close the connections. It is the timeout to give a release step that
// calls Close, so that a close that merely waits is not reported as timed
// out.
func (s *Set) CloseTimeout() time.Duration {
	var d time.Duration
	for _, p := range s.pools() {
		d += p.closeTimeout()
	}
	return d
}

// closeConnsTime is what CloseTimeout allows each pool, past its waits and
// forced closes, for the driver to close its connections (a goodbye
// written on each idle one).
const closeConnsTime = time.Second

// closeTimeout is the pool's share of Set.CloseTimeout.
func (p *Pool) closeTimeout() time.Duration {
	d := p.cfg.CloseWait + time.Duration(p.cfg.MaxOpen)*forceCloseWait + closeConnsTime
	if p.health != nil {
		d += 2 * p.cfg.HealthInterval
	}
	return d
}

// Close closes the pool. It stops new statements (they fail with
// ErrPoolClosed) and a read pool's health check (a check under way gets up
// to two HealthIntervals to finish, then is cancelled), waits up to
// CloseWait for lent connections to come back, then closes any still held
// under their holder and logs each with the repository and the stack that
// took it (a *sql.Rows, *sql.Tx or *sql.Conn left open: the driver says
// goodbye to the server on it), lists prepared statements still open, and
// closes the *sql.DB, which says goodbye on every idle connection. The
// error names what was still held.
//
// Close blocks for at most two HealthIntervals (a read pool with a Health
// check, which is then cancelled and must return), plus CloseWait, plus
// 100 ms for each held connection whose driver call has not returned (left
// to close with the pool), plus what the driver takes to close the
// connections (MySQL: one goodbye packet written on each); Set.CloseTimeout
// adds these up. Once ctx is done it waits no more for the health check or
// for lent connections, and goes on to close every connection before it
// returns. It is idempotent and safe for concurrent use: later and
// concurrent calls wait for the first and return its result. Set.Close
// calls it for each of the set's pools.
func (p *Pool) Close(ctx context.Context) error {
	p.closeOnce.Do(func() {
		p.mu.Lock()
		p.closed.Store(true)
		p.mu.Unlock()
		p.stopHealth(ctx)
		wctx, cancel := context.WithTimeout(ctx, p.cfg.CloseWait)
		defer cancel()
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for p.inUse.Load() > 0 {
			select {
			case <-wctx.Done():
			case <-tick.C:
				continue
			}
			break
		}
		var errs []error
		if leftover := p.heldNow(); len(leftover) > 0 {
			var names []string
			for _, h := range leftover {
				if h.reported.CompareAndSwap(false, true) { // unless the leak watch counted it
					h.repo.leaks.Add(1)
				}
				p.log.Warn("poolset: still held at close; closing it",
					"pool", p.cfg.Name, "repo", h.repo.name, "kind", h.kind.String(),
					"held", time.Since(h.since).Round(time.Millisecond), "stack", stackString(h.stack))
				names = append(names, h.repo.name+" "+h.kind.String())
				if h.conn != nil && !h.conn.forceClose() {
					errs = append(errs, fmt.Errorf("poolset: pool %s: a %s of %s still running a call: left to close with the pool", p.cfg.Name, h.kind, h.repo.name))
				}
			}
			errs = append(errs, fmt.Errorf("poolset: pool %s: %d still held at close (%s), closed", p.cfg.Name, len(leftover), strings.Join(names, ", ")))
		}
		if err := p.db.Close(); err != nil {
			errs = append(errs, fmt.Errorf("poolset: close pool %s: %w", p.cfg.Name, err))
		}
		p.closeErr = errors.Join(errs...)
	})
	return p.closeErr
}

// Close implements driver.Conn: database/sql calls it when it drops the
// connection.
func (c *conn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closeLocked()
}

// closeLocked ends the lease and closes the connection once, with whatever
// rows or transaction are still open on it (none, when database/sql closes
// it). c.mu is held.
func (c *conn) closeLocked() error {
	c.checkin()
	if c.closed {
		return nil
	}
	c.closed = true
	c.pool.untrack(c)
	for _, r := range c.rows {
		r.closeLocked()
	}
	if c.tx != nil {
		c.tx.inner.Rollback()
		c.tx = nil
	}
	return c.inner.Close()
}

// forceClose closes the connection under whoever holds it, at Close: the
// driver says goodbye to the server (MySQL: COM_QUIT), so that the server
// counts no aborted client. It waits up to forceCloseWait for a call under
// way to return, and gives up on a connection whose call does not.
func (c *conn) forceClose() bool {
	deadline := time.Now().Add(forceCloseWait)
	for !c.mu.TryLock() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
	defer c.mu.Unlock()
	c.closeLocked()
	return true
}

// forceCloseWait bounds forceClose's wait for a call under way.
const forceCloseWait = 100 * time.Millisecond
