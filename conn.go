package poolset

import (
	"context"
	"database/sql/driver"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// Attribution without owning what the caller holds. Every pool's *sql.DB
// opens its connections through a connector that wraps the driver's, so
// each connection sees the context of every statement run on it, and sees
// database/sql hand it back: database/sql calls driver.Validator.IsValid
// whenever a connection returns to the pool, and Close when it drops one.
// A connection is checked out to the repository named by the context of
// its first statement (a Handle's label, WithRepo's, or Unattributed), and
// checked in at IsValid or Close. So the *sql.Rows, *sql.Tx, *sql.Stmt and
// *sql.Conn that users hold are database/sql's own, closed the usual way,
// and every path through the pool (a Handle, the *sql.DB, sqlx or GORM on
// either) is counted.

// Unattributed is the repository under which statements are counted whose
// context names none: use of a pool's *sql.DB (Pool.DB) without WithRepo.
const Unattributed = "(unattributed)"

type labelKey struct{}

// label names the repository a statement runs for.
type label struct {
	h        *Handle // the Handle's own label; nil for WithRepo's
	name     string
	readOnly bool  // a Reader's query on the primary: run it in a read-only transaction
	call     *call // the wait of a call made while the pool was full, timed and bounded
}

// WithRepo returns a context under which statements on the set's pools, run
// through a pool's *sql.DB (Pool.DB) or anything built on it (sqlx.NewDb,
// bun.NewDB, ent), count against repository name, as a Handle's do:
// db.QueryContext(poolset.WithRepo(ctx, "users"), ...). A statement run
// without it counts against Unattributed. Only the wait for a connection
// under a Handle is bounded by the pool's AcquireTimeout; through the
// *sql.DB it is database/sql's, bounded by ctx. It panics if name is empty.
func WithRepo(ctx context.Context, name string) context.Context {
	if name == "" {
		panic("poolset: WithRepo: empty repository name")
	}
	return context.WithValue(ctx, labelKey{}, &label{name: name})
}

func labelOf(ctx context.Context) *label {
	l, _ := ctx.Value(labelKey{}).(*label)
	return l
}

// connector opens a pool's connections through the driver's connector and
// wraps each one.
type connector struct {
	driver.Connector
	pool *Pool
}

func (c *connector) Connect(ctx context.Context) (driver.Conn, error) {
	inner, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
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
	if lb != nil && lb.call != nil {
		rs.waitNanos.Add(now.UnixNano() - lb.call.start)
	}
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
	rs.holdNanos.Add(hold)
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
	if rs != nil {
		rs.queries.Add(1)
		if rs != fallback { // the preparer's use was recorded when it prepared
			markUse(lb, rs, kind == kindExec)
		}
	}
	return lb, nil
}

// lock takes c.mu for a call into inner, unless the connection was closed at
// release: then it returns driver.ErrBadConn, without the lock.
func (c *conn) lock() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return driver.ErrBadConn
	}
	return nil
}

// markUse records that the repository rs read or wrote, for a statement
// not run through a Handle (whose methods record it themselves): one under
// WithRepo or Unattributed, through a pool's *sql.DB. Without it such a
// repository would be counted but left out of Stats and Tree.
func markUse(lb *label, rs *repoStats, write bool) {
	if lb != nil && lb.h != nil {
		return
	}
	if write {
		markWrites(rs)
	} else {
		markReads(rs)
	}
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
	if cs := causalFrom(ctx); cs != nil && c.pool.cfg.PositionQuery != "" {
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

// forceClose closes the connection under whoever holds it, at release: the
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
