package poolset

import (
	"context"
	"database/sql/driver"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// connector opens a pool's connections through the driver's connector and
// wraps each one.
type connector struct {
	driver.Connector
	pool *Pool
}

func (c *connector) Connect(ctx context.Context) (driver.Conn, error) {
	start := time.Now()
	inner, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	c.pool.observeCreate(time.Since(start))
	cn := &conn{inner: inner, pool: c.pool}
	c.pool.track(cn)
	return cn, nil
}

// conn is one of a pool's connections. database/sql uses it from one
// goroutine at a time; the leak watch and Close read its lease from others.
type conn struct {
	inner driver.Conn
	pool  *Pool

	mu     sync.Mutex // held while a call is in inner, and by forceClose
	closed bool       // guarded by mu
	rows   []*rows    // open rows, guarded by mu
	tx     *tx        // the open transaction, guarded by mu

	// The lease, while the connection is checked out.
	holder   atomic.Pointer[repoStats]
	since    atomic.Int64 // unix nanos of the checkout
	kind     atomic.Uint32
	reported atomic.Bool // counted as a leak
	smu      sync.Mutex
	stack    []uintptr // the checkout's stack, when leak detection is on
}

// checkout attributes the connection, unless it is checked out already, to
// the repository lb names (Unattributed when lb is nil), and returns who
// holds it. It fails when the call's wait for the connection timed out
// before the connection came.
func (c *conn) checkout(lb *label, kind leaseKind, fallback *repoStats) (*repoStats, error) {
	if rs := c.holder.Load(); rs != nil {
		return rs, nil
	}
	p := c.pool
	var rs *repoStats
	switch {
	case lb != nil:
		if cl := lb.call; cl != nil && !cl.acquired() {
			return nil, cl.err()
		}
		rs = p.statsFor(lb)
	case fallback != nil:
		rs = fallback
	default:
		rs = p.repo(Unattributed)
	}
	now := time.Now()
	c.since.Store(now.UnixNano())
	c.kind.Store(uint32(kind))
	c.reported.Store(false)
	if p.leaks != nil {
		st := callers()
		c.smu.Lock()
		c.stack = st
		c.smu.Unlock()
	}
	c.holder.Store(rs)
	p.inUse.Add(1)
	rs.inUse.Add(1)
	rs.acquires.Add(1)
	var wait time.Duration
	switch {
	case lb == nil:
	case lb.call != nil:
		wait = time.Duration(now.UnixNano() - lb.call.start)
	case lb.start != 0:
		wait = time.Duration(now.UnixNano() - lb.start)
	}
	p.observeWait(rs, wait, false)
	return rs, nil
}

// checkin ends the lease: the connection is back in the pool, or gone.
func (c *conn) checkin() {
	rs := c.holder.Swap(nil)
	if rs == nil {
		return
	}
	hold := time.Now().UnixNano() - c.since.Load()
	c.pool.inUse.Add(-1)
	rs.inUse.Add(-1)
	c.pool.observeHold(rs, time.Duration(hold))
	for {
		cur := rs.longest.Load()
		if hold <= cur || rs.longest.CompareAndSwap(cur, hold) {
			break
		}
	}
}

// use checks the connection out for a statement run with ctx (counted
// against fallback, a prepared statement's preparer, when ctx names no
// repository) and counts the statement.
func (c *conn) use(ctx context.Context, kind leaseKind, fallback *repoStats) (*label, error) {
	lb := labelOf(ctx)
	rs, err := c.checkout(lb, kind, fallback)
	if err != nil {
		return nil, err
	}
	if rs != nil && (lb == nil || !lb.internal) {
		rs.queries.Add(1)
		if rs != fallback { // the preparer's use was recorded when it prepared
			markUse(lb, rs, kind == kindExec)
		}
	}
	return lb, nil
}

// lock takes c.mu for a call into inner, unless the connection was closed
// with its pool: then it returns driver.ErrBadConn, without the lock.
func (c *conn) lock() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return driver.ErrBadConn
	}
	return nil
}

// Prepare implements driver.Conn; database/sql uses PrepareContext.
func (c *conn) Prepare(query string) (driver.Stmt, error) {
	return c.PrepareContext(context.Background(), query)
}

func (c *conn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	rs, err := c.checkout(labelOf(ctx), kindStmt, nil)
	if err != nil {
		return nil, err
	}
	if err := c.lock(); err != nil {
		return nil, err
	}
	defer c.mu.Unlock()
	var s driver.Stmt
	if pc, ok := c.inner.(driver.ConnPrepareContext); ok {
		s, err = pc.PrepareContext(ctx, query)
	} else {
		s, err = c.inner.Prepare(query)
	}
	if err != nil {
		return nil, err
	}
	st := &stmt{inner: s, c: c, repo: rs, since: time.Now()}
	if c.pool.leaks != nil {
		st.stack = callers()
	}
	c.pool.trackStmt(st)
	return st, nil
}

// Begin implements driver.Conn; database/sql uses BeginTx.
func (c *conn) Begin() (driver.Tx, error) {
	return c.BeginTx(context.Background(), driver.TxOptions{})
}

func (c *conn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	lb := labelOf(ctx)
	rs, err := c.checkout(lb, kindTx, nil)
	if err != nil {
		return nil, err
	}
	if rs != nil {
		rs.txs.Add(1)
		markUse(lb, rs, !opts.ReadOnly)
	}
	if err := c.lock(); err != nil {
		return nil, err
	}
	defer c.mu.Unlock()
	inner, err := c.begin(ctx, opts)
	if err != nil {
		return nil, err
	}
	t := &tx{inner: inner, c: c}
	if cs := causalFrom(ctx); cs != nil && c.pool.positionQuery() != "" {
		t.causal = cs
	}
	c.tx = t
	return t, nil
}

// begin begins a transaction on inner. c.mu is held.
func (c *conn) begin(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	if b, ok := c.inner.(driver.ConnBeginTx); ok {
		return b.BeginTx(ctx, opts)
	}
	if opts.ReadOnly || opts.Isolation != 0 {
		return nil, errors.New("poolset: the driver cannot begin a transaction with options")
	}
	return c.inner.Begin() //nolint:staticcheck // the driver has nothing newer
}

func (c *conn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	ex, ok := c.inner.(driver.ExecerContext)
	if !ok {
		return nil, driver.ErrSkip
	}
	if _, err := c.use(ctx, kindExec, nil); err != nil {
		return nil, err
	}
	if err := c.lock(); err != nil {
		return nil, err
	}
	defer c.mu.Unlock()
	res, err := ex.ExecContext(ctx, query, args)
	if err == nil && c.tx == nil {
		if cs := causalFrom(ctx); cs != nil {
			c.recordPosition(ctx, cs)
		}
	}
	return res, err
}

func (c *conn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	q, ok := c.inner.(driver.QueryerContext)
	if !ok {
		return nil, driver.ErrSkip
	}
	lb, err := c.use(ctx, kindRows, nil)
	if err != nil {
		return nil, err
	}
	if err := c.lock(); err != nil {
		return nil, err
	}
	defer c.mu.Unlock()
	if lb != nil && lb.readOnly && c.tx == nil {
		return c.queryReadOnly(ctx, q, query, args)
	}
	r, err := q.QueryContext(ctx, query, args)
	if err != nil {
		return nil, err
	}
	return c.newRows(r, nil), nil
}

// newRows wraps r, read on c, so that forceClose can close it. c.mu is held.
func (c *conn) newRows(r driver.Rows, t driver.Tx) *rows {
	rs := &rows{Rows: r, c: c, tx: t}
	c.rows = append(c.rows, rs)
	return rs
}

// queryReadOnly runs a Reader's query on the primary in a read-only
// transaction, ended when its rows are closed, so that a write sent
// through a Reader fails there as on a read pool. c.mu is held.
func (c *conn) queryReadOnly(ctx context.Context, q driver.QueryerContext, query string, args []driver.NamedValue) (driver.Rows, error) {
	b, ok := c.inner.(driver.ConnBeginTx)
	if !ok {
		return q.QueryContext(ctx, query, args)
	}
	tx, err := b.BeginTx(ctx, driver.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, err
	}
	r, err := q.QueryContext(ctx, query, args)
	if err != nil {
		tx.Rollback()
		return nil, err
	}
	return c.newRows(r, tx), nil
}

func (c *conn) Ping(ctx context.Context) error {
	p, ok := c.inner.(driver.Pinger)
	if !ok {
		return nil
	}
	if _, err := c.checkout(labelOf(ctx), kindConn, nil); err != nil {
		return err
	}
	if err := c.lock(); err != nil {
		return err
	}
	defer c.mu.Unlock()
	return p.Ping(ctx)
}

func (c *conn) ResetSession(ctx context.Context) error {
	if r, ok := c.inner.(driver.SessionResetter); ok {
		return r.ResetSession(ctx)
	}
	return nil
}

// IsValid is called by database/sql as the connection goes back to the
// pool: the lease ends.
func (c *conn) IsValid() bool {
	c.checkin()
	if v, ok := c.inner.(driver.Validator); ok {
		return v.IsValid()
	}
	return true
}

func (c *conn) CheckNamedValue(nv *driver.NamedValue) error {
	if ch, ok := c.inner.(driver.NamedValueChecker); ok {
		return ch.CheckNamedValue(nv)
	}
	return driver.ErrSkip
}

var (
	_ driver.Conn                   = (*conn)(nil)
	_ driver.ConnBeginTx            = (*conn)(nil)
	_ driver.ConnPrepareContext     = (*conn)(nil)
	_ driver.ExecerContext          = (*conn)(nil)
	_ driver.QueryerContext         = (*conn)(nil)
	_ driver.Pinger                 = (*conn)(nil)
	_ driver.SessionResetter        = (*conn)(nil)
	_ driver.Validator              = (*conn)(nil)
	_ driver.NamedValueChecker      = (*conn)(nil)
	_ driver.StmtExecContext        = (*stmt)(nil)
	_ driver.RowsNextResultSet      = (*rows)(nil)
	_ driver.RowsColumnTypeScanType = (*rows)(nil)
	_ driver.StmtQueryContext       = (*stmt)(nil)
)
