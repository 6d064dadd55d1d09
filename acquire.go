package poolset

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The acquire timeout bounds the wait for a connection, not the statement.
// database/sql waits for a connection on the statement's own context, so a
// deadline there would bound both. A Handle's call made while its pool has
// no idle connection to lend therefore gets a context of its own: done when
// the caller's is, or when the acquire timeout passes before the
// connection has come, and never after (the connection's checkout stops the
// timer first, see call.acquired). A call made while the pool has room,
// the common case, costs nothing of this.

// Call states.
const (
	callWaiting int32 = iota
	callAcquired
	callTimedOut
	callFinished // returned without a connection
)

// call is one Handle call made while its pool was full: its wait is timed
// and bounded by the acquire timeout.
type call struct {
	pool  *Pool
	repo  *repoStats
	start int64 // unix nanos
	state atomic.Int32
	timer *time.Timer
	ctx   *acquireCtx
}

// enter returns the context for a call by lb's repository rs on p: ctx
// labelled, and when p is full, with the wait timed, counted and bounded by
// p's AcquireTimeout. The caller must pass the call to exit.
func (p *Pool) enter(ctx context.Context, lb *label, rs *repoStats) (context.Context, *call) {
	if p.cfg.AcquireTimeout <= 0 || p.inUse.Load() < int64(p.lend) {
		c := &labelCtx{Context: ctx, lb: *lb}
		c.lb.start = time.Now().UnixNano()
		return c, nil
	}
	cl := &call{pool: p, repo: rs, start: time.Now().UnixNano()}
	own := *lb
	own.call = cl
	cl.ctx = newAcquireCtx(context.WithValue(ctx, labelKey{}, &own))
	p.waiting.Add(1)
	rs.waiting.Add(1)
	cl.timer = time.AfterFunc(p.cfg.AcquireTimeout, cl.timeout)
	return cl.ctx, cl
}

// acquired reports whether the call may use the connection it got: it has
// not timed out. The first such report ends the wait.
func (cl *call) acquired() bool {
	if cl.state.CompareAndSwap(callWaiting, callAcquired) {
		cl.timer.Stop()
		cl.endWait()
		return true
	}
	return cl.state.Load() == callAcquired
}

func (cl *call) endWait() {
	cl.pool.waiting.Add(-1)
	cl.repo.waiting.Add(-1)
}

// timeout ends a wait that has lasted the acquire timeout.
func (cl *call) timeout() {
	if !cl.state.CompareAndSwap(callWaiting, callTimedOut) {
		return
	}
	wait := time.Duration(time.Now().UnixNano() - cl.start)
	cl.repo.timeouts.Add(1)
	cl.pool.observeWait(cl.repo, wait, true)
	cl.endWait()
	cl.ctx.cancel(cl.pool.timeoutError(wait))
}

// err is the error of a call that timed out.
func (cl *call) err() error { return cl.ctx.Err() }

// exit ends a call (cl may be nil) that returned err, and returns the error
// to give the caller: the acquire timeout's when the wait timed out, and
// ErrPoolClosed after Close.
func (p *Pool) exit(cl *call, err error) error {
	if cl != nil && cl.state.CompareAndSwap(callWaiting, callFinished) {
		cl.timer.Stop()
		cl.endWait()
	}
	if err == nil {
		return nil
	}
	if cl != nil && cl.state.Load() == callTimedOut {
		var te *AcquireTimeoutError
		if !errors.As(err, &te) {
			return cl.err()
		}
		return err
	}
	if cerr := p.closedErr(); cerr != nil && (errors.Is(err, sql.ErrConnDone) || strings.Contains(err.Error(), "sql: database is closed")) {
		return cerr
	}
	return err
}

// acquireCtx is a call's context while its pool is full: done when its
// parent is, or when the acquire timeout passes first, and then its Err is
// the *AcquireTimeoutError, which database/sql returns as it is.
type acquireCtx struct {
	context.Context
	done chan struct{}
	once sync.Once
	mu   sync.Mutex
	e    error
}

func newAcquireCtx(parent context.Context) *acquireCtx {
	c := &acquireCtx{Context: parent, done: make(chan struct{})}
	// Ends when parent is done (the registration goes with it) or never,
	// for a parent that is never done.
	context.AfterFunc(parent, func() { c.cancel(context.Cause(parent)) })
	return c
}

func (c *acquireCtx) cancel(err error) {
	c.once.Do(func() {
		c.mu.Lock()
		c.e = err
		c.mu.Unlock()
		close(c.done)
	})
}

func (c *acquireCtx) Done() <-chan struct{} { return c.done }

func (c *acquireCtx) Err() error {
	select {
	case <-c.done:
	default:
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var te *AcquireTimeoutError
	if errors.As(c.e, &te) {
		return c.e
	}
	return c.Context.Err()
}

func (p *Pool) timeoutError(wait time.Duration) error {
	e := &AcquireTimeoutError{
		Pool:    p.cfg.Name,
		Waited:  wait,
		MaxOpen: p.cfg.MaxOpen,
		InUse:   int(p.inUse.Load()),
		Waiting: int(p.waiting.Load()),
		Holders: map[string]int{},
	}
	for _, c := range p.connList() {
		if rs := c.holder.Load(); rs != nil {
			e.Holders[rs.name]++
		}
	}
	return e
}
