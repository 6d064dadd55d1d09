package poolset

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"reflect"
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

// use checks the connection out for a statement run with ctx and counts the
// statement.
func (c *conn) use(ctx context.Context, kind leaseKind) (*label, error) {
	lb := labelOf(ctx)
	rs, err := c.checkout(lb, kind, nil)
	if err != nil {
		return nil, err
	}
	if rs != nil {
		rs.queries.Add(1)
		markUse(lb, rs, kind == kindExec)
	}
	return lb, nil
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
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, driver.ErrBadConn
	}
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
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, driver.ErrBadConn
	}
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
	if _, err := c.use(ctx, kindExec); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, driver.ErrBadConn
	}
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
	lb, err := c.use(ctx, kindRows)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, driver.ErrBadConn
	}
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
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return driver.ErrBadConn
	}
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
	c.checkin()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	c.pool.untrack(c)
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
	c.checkin()
	if c.closed {
		return true
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
	c.inner.Close()
	return true
}

// forceCloseWait bounds forceClose's wait for a call under way.
const forceCloseWait = 100 * time.Millisecond

// recordPosition stores the primary's replication position after a write
// made under read-your-writes. c.mu is held.
func (c *conn) recordPosition(ctx context.Context, cs *causal) {
	q := c.pool.cfg.PositionQuery
	if q == "" {
		return
	}
	pos, err := c.queryString(ctx, q)
	if err != nil {
		c.pool.log.Warn("poolset: read the primary's position after a write", "pool", c.pool.cfg.Name, "err", err)
		cs.set(positionUnknown) // later reads go to the primary
		return
	}
	cs.set(pos)
}

// queryString runs query, which returns one value, on the connection. c.mu
// is held.
func (c *conn) queryString(ctx context.Context, query string) (string, error) {
	q, ok := c.inner.(driver.QueryerContext)
	if !ok {
		return "", errors.New("the driver cannot run a query without preparing it")
	}
	rows, err := q.QueryContext(ctx, query, nil)
	if err != nil {
		return "", err
	}
	defer rows.Close()
	vals := make([]driver.Value, len(rows.Columns()))
	if err := rows.Next(vals); err != nil || len(vals) == 0 {
		return "", errors.New("no position returned")
	}
	switch v := vals[0].(type) {
	case string:
		return v, nil
	case []byte:
		return string(v), nil
	case nil:
		return "", nil
	}
	return "", errors.New("position is not text")
}

// errClosedAtRelease is the error of rows, a transaction or a statement
// used after the set's release closed their connection under them.
var errClosedAtRelease = fmt.Errorf("%w: the connection was closed at release", ErrPoolClosed)

// tx is a transaction on a pool's connection. Under read-your-writes its
// Commit records the primary's position.
type tx struct {
	inner  driver.Tx
	c      *conn
	causal *causal
}

func (t *tx) Commit() error {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	if t.c.closed {
		return errClosedAtRelease
	}
	t.c.tx = nil
	if err := t.inner.Commit(); err != nil {
		return err
	}
	if t.causal != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		t.c.recordPosition(ctx, t.causal)
	}
	return nil
}

func (t *tx) Rollback() error {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	if t.c.closed {
		return errClosedAtRelease
	}
	t.c.tx = nil
	return t.inner.Rollback()
}

// rows are the rows of a query on a pool's connection, and for a Reader's
// query on the primary, the read-only transaction they are read in, ended
// when they are closed. The optional interfaces of the driver's rows are
// passed on, so that database/sql's ColumnTypes sees what it would see.
type rows struct {
	driver.Rows
	c      *conn
	tx     driver.Tx
	closed atomic.Bool
}

func (r *rows) Next(dest []driver.Value) error {
	if r.closed.Load() {
		return errClosedAtRelease
	}
	return r.Rows.Next(dest)
}

func (r *rows) Close() error {
	r.c.mu.Lock()
	defer r.c.mu.Unlock()
	return r.closeLocked()
}

// closeLocked closes the rows once. c.mu is held.
func (r *rows) closeLocked() error {
	if !r.closed.CompareAndSwap(false, true) {
		return nil
	}
	for i, o := range r.c.rows {
		if o == r {
			r.c.rows = append(r.c.rows[:i], r.c.rows[i+1:]...)
			break
		}
	}
	err := r.Rows.Close()
	if r.tx != nil {
		if rerr := r.tx.Rollback(); err == nil {
			err = rerr
		}
	}
	return err
}

func (r *rows) HasNextResultSet() bool {
	n, ok := r.Rows.(driver.RowsNextResultSet)
	return ok && n.HasNextResultSet()
}

func (r *rows) NextResultSet() error {
	if n, ok := r.Rows.(driver.RowsNextResultSet); ok {
		return n.NextResultSet()
	}
	return io.EOF
}

func (r *rows) ColumnTypeScanType(i int) reflect.Type {
	if t, ok := r.Rows.(driver.RowsColumnTypeScanType); ok {
		return t.ColumnTypeScanType(i)
	}
	return reflect.TypeFor[any]()
}

func (r *rows) ColumnTypeDatabaseTypeName(i int) string {
	if t, ok := r.Rows.(driver.RowsColumnTypeDatabaseTypeName); ok {
		return t.ColumnTypeDatabaseTypeName(i)
	}
	return ""
}

func (r *rows) ColumnTypeLength(i int) (int64, bool) {
	if t, ok := r.Rows.(driver.RowsColumnTypeLength); ok {
		return t.ColumnTypeLength(i)
	}
	return 0, false
}

func (r *rows) ColumnTypeNullable(i int) (bool, bool) {
	if t, ok := r.Rows.(driver.RowsColumnTypeNullable); ok {
		return t.ColumnTypeNullable(i)
	}
	return false, false
}

func (r *rows) ColumnTypePrecisionScale(i int) (int64, int64, bool) {
	if t, ok := r.Rows.(driver.RowsColumnTypePrecisionScale); ok {
		return t.ColumnTypePrecisionScale(i)
	}
	return 0, 0, false
}

// stmt is a prepared statement of a pool's connection. Its executions count
// against the repository of their context, or that of the statement's
// preparer when the context names none.
type stmt struct {
	inner driver.Stmt
	c     *conn
	repo  *repoStats // the preparer
	since time.Time
	stack []uintptr

	reported atomic.Bool
	closed   atomic.Bool
}

func (s *stmt) Close() error {
	if s.closed.CompareAndSwap(false, true) {
		s.c.pool.untrackStmt(s)
	}
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	if s.c.closed {
		return nil
	}
	return s.inner.Close()
}

func (s *stmt) NumInput() int { return s.inner.NumInput() }

// run checks the connection out for one execution of the statement,
// counts it, and runs f with c.mu held, unless the connection was closed at
// release.
func (s *stmt) run(ctx context.Context, kind leaseKind, f func() error) error {
	lb := labelOf(ctx)
	rs, err := s.c.checkout(lb, kind, s.repo)
	if err != nil {
		return err
	}
	if rs != nil {
		rs.queries.Add(1)
		if rs != s.repo {
			markUse(lb, rs, kind == kindExec)
		}
	}
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	if s.c.closed {
		return driver.ErrBadConn
	}
	return f()
}

func (s *stmt) Exec(args []driver.Value) (driver.Result, error) {
	return s.ExecContext(context.Background(), named(args))
}

func (s *stmt) Query(args []driver.Value) (driver.Rows, error) {
	return s.QueryContext(context.Background(), named(args))
}

func (s *stmt) ExecContext(ctx context.Context, args []driver.NamedValue) (res driver.Result, err error) {
	err = s.run(ctx, kindExec, func() error {
		if ex, ok := s.inner.(driver.StmtExecContext); ok {
			res, err = ex.ExecContext(ctx, args)
			return err
		}
		vs, err := values(args)
		if err == nil {
			res, err = s.inner.Exec(vs) //nolint:staticcheck // the driver has nothing newer
		}
		return err
	})
	return res, err
}

func (s *stmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	var r driver.Rows
	err := s.run(ctx, kindRows, func() error {
		var err error
		if q, ok := s.inner.(driver.StmtQueryContext); ok {
			r, err = q.QueryContext(ctx, args)
		} else {
			var vs []driver.Value
			if vs, err = values(args); err == nil {
				r, err = s.inner.Query(vs) //nolint:staticcheck // the driver has nothing newer
			}
		}
		if err == nil {
			r = s.c.newRows(r, nil)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return r, nil
}

func (s *stmt) CheckNamedValue(nv *driver.NamedValue) error {
	if ch, ok := s.inner.(driver.NamedValueChecker); ok {
		return ch.CheckNamedValue(nv)
	}
	return s.c.CheckNamedValue(nv)
}

func named(args []driver.Value) []driver.NamedValue {
	nv := make([]driver.NamedValue, len(args))
	for i, v := range args {
		nv[i] = driver.NamedValue{Ordinal: i + 1, Value: v}
	}
	return nv
}

func values(args []driver.NamedValue) ([]driver.Value, error) {
	vs := make([]driver.Value, len(args))
	for i, a := range args {
		if a.Name != "" {
			return nil, errors.New("poolset: the driver does not take named arguments")
		}
		vs[i] = a.Value
	}
	return vs, nil
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
