package poolset

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"sync/atomic"
)

// Handle is a repository's labelled view of a Set: every connection its
// statements take is counted against the repository's name on the pool it
// comes from. Its methods are database/sql's, with database/sql's own
// types (*sql.Rows, *sql.Row, *sql.Stmt, *sql.Tx, *sql.Conn), so that code
// written for a *sql.DB runs on it unchanged: sqlc's New(h), GORM's
// Config.Conn. Statements on a Handle go to the primary; reads that may be
// stale go through Read. A Handle is cheap, safe for concurrent use, and
// never opens or closes a pool.
//
// The wait for a connection is bounded by the pool's AcquireTimeout
// (*AcquireTimeoutError names who holds the pool); the statement is
// bounded only by ctx. What a Handle returns is closed the database/sql
// way (Rows.Close, Row.Scan, Tx.Commit or Rollback, Stmt.Close,
// Conn.Close), which gives the connection back and ends its attribution.
type Handle struct {
	set     *Set
	name    string
	primary *repoStats
	policy  ReadPolicy
	reads   []atomic.Pointer[repoStats] // per read pool, set on first use
	lbl     label                       // the handle's statements
	roLbl   label                       // its Reader's queries on the primary
}

// readStats returns h's figures on read pool i, registering h there on
// first use, without taking the pool's lock on every read.
func (h *Handle) readStats(i int) *repoStats {
	if rs := h.reads[i].Load(); rs != nil {
		return rs
	}
	rs := h.set.reads[i].repo(h.name) // the same pointer on every call
	h.reads[i].Store(rs)
	return rs
}

// Name returns the repository name the handle counts against.
func (h *Handle) Name() string { return h.name }

func markReads(rs *repoStats) {
	if !rs.reads.Load() {
		rs.reads.Store(true)
	}
}

func markWrites(rs *repoStats) {
	if !rs.writes.Load() {
		rs.writes.Store(true)
	}
}

// ExecContext runs a statement on the primary. Under ReadYourWrites it then
// records the primary's replication position, which costs one round trip.
func (h *Handle) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	markWrites(h.primary)
	p := h.set.primary
	ctx, cl := p.enter(ctx, &h.lbl, h.primary)
	res, err := p.db.ExecContext(ctx, query, args...)
	return res, p.exit(cl, err)
}

// QueryContext runs a query on the primary. The rows hold a connection
// until Next returns false or Close is called.
func (h *Handle) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	markReads(h.primary)
	p := h.set.primary
	ctx, cl := p.enter(ctx, &h.lbl, h.primary)
	rows, err := p.db.QueryContext(ctx, query, args...)
	return rows, p.exit(cl, err)
}

// QueryRowContext runs a query expected to return at most one row on the
// primary. The connection is held until Scan is called.
func (h *Handle) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	markReads(h.primary)
	p := h.set.primary
	ctx, cl := p.enter(ctx, &h.lbl, h.primary)
	return p.row(cl, p.db.QueryRowContext(ctx, query, args...))
}

// row ends cl and returns row, or a row with the error exit gives when it
// differs from the row's own (ErrPoolClosed).
func (p *Pool) row(cl *call, row *sql.Row) *sql.Row {
	if err := p.exit(cl, row.Err()); err != nil && err != row.Err() {
		return errRow(err)
	}
	return row
}

// PrepareContext prepares a statement on the primary. Its executions count
// against the repository their context names (WithRepo, or a Handle's
// call), else against this one where the driver can tell (on the
// connection it was prepared on), else Unattributed.
func (h *Handle) PrepareContext(ctx context.Context, query string) (*sql.Stmt, error) {
	markWrites(h.primary)
	p := h.set.primary
	ctx, cl := p.enter(ctx, &h.lbl, h.primary)
	st, err := p.db.PrepareContext(ctx, query)
	return st, p.exit(cl, err)
}

// BeginTx starts a transaction on the primary, whatever opts says; use
// Read().BeginTx for a read-only transaction on a read pool. Statements in
// it count against this repository. Under ReadYourWrites, Commit records
// the primary's position.
func (h *Handle) BeginTx(ctx context.Context, opts *sql.TxOptions) (*sql.Tx, error) {
	markWrites(h.primary)
	p := h.set.primary
	ctx, cl := p.enter(ctx, &h.lbl, h.primary)
	tx, err := p.db.BeginTx(ctx, opts)
	return tx, p.exit(cl, err)
}

// Conn returns a connection of the primary for session work (locks,
// session variables, temporary tables), counted against this repository
// until its Close.
func (h *Handle) Conn(ctx context.Context) (*sql.Conn, error) {
	markWrites(h.primary)
	return h.set.primary.conn(ctx, &h.lbl, h.primary)
}

// conn takes a connection of p for lb's repository rs, and checks it out to
// rs at once.
func (p *Pool) conn(ctx context.Context, lb *label, rs *repoStats) (*sql.Conn, error) {
	ctx, cl := p.enter(ctx, lb, rs)
	c, err := p.db.Conn(ctx)
	if err = p.exit(cl, err); err != nil {
		return nil, err
	}
	err = c.Raw(func(dc any) error {
		if cn, ok := dc.(*conn); ok {
			_, err := cn.checkout(labelOf(ctx), kindConn, nil)
			return err
		}
		return nil
	})
	if err != nil {
		c.Close()
		return nil, p.exit(cl, err)
	}
	return c, nil
}

// PingContext checks that the primary answers (Pool.Ping): a caller that
// met an error can tell a server that is gone from a statement that
// failed.
func (h *Handle) PingContext(ctx context.Context) error { return h.set.primary.Ping(ctx) }

// Interrupt ends the statements running now on the primary pool's
// connections, this handle's and every other repository's, without closing
// the connections (see Pool.Interrupt).
func (h *Handle) Interrupt(ctx context.Context) (int, error) { return h.set.primary.Interrupt(ctx) }

// Read returns the handle's view for reads that may be stale: they go to a
// read pool when one is usable, else to the primary or fail, as the
// handle's ReadPolicy says.
func (h *Handle) Read() *Reader { return &Reader{h: h} }

// ReadPolicy says what a repository's reads do when no read pool is usable.
type ReadPolicy uint8

const (
	// FallbackToPrimary sends the reads to the primary. The default.
	FallbackToPrimary ReadPolicy = iota
	// FailWithoutReadPool fails the reads with ErrNoReadPool, for reads that
	// must never load the primary.
	FailWithoutReadPool
)

// String returns the policy's name, such as "FallbackToPrimary".
func (p ReadPolicy) String() string {
	switch p {
	case FallbackToPrimary:
		return "FallbackToPrimary"
	case FailWithoutReadPool:
		return "FailWithoutReadPool"
	}
	return fmt.Sprintf("ReadPolicy(%d)", uint8(p))
}

// ErrReadView is returned by a Reader's ExecContext: a read view runs no
// statement meant to write.
var ErrReadView = errors.New("poolset: ExecContext on a read view (Handle.Read); write through the Handle")

// Reader runs reads that may be stale on a read pool. It has a *sql.DB's
// methods, so that code written for one (sqlc's New(h.Read())) reads
// through it. ExecContext always fails with ErrReadView, in a set with read
// pools or without, so that development and production behave alike.
// Sessions on read pools are read-only, and a read that goes to the
// primary runs in a read-only transaction there, so a write sent through a
// query fails too instead of writing. (SQLite does not enforce read-only
// transactions.) A read whose read pool cannot give a working connection
// is tried once on the primary (FallbackToPrimary) or fails with
// ErrNoReadPool (FailWithoutReadPool); either is counted, and the read pool
// leaves the rotation until its next health check passes.
type Reader struct{ h *Handle }

// ExecContext fails with ErrReadView.
func (r *Reader) ExecContext(context.Context, string, ...any) (sql.Result, error) {
	return nil, fmt.Errorf("poolset: read by %s: %w", r.h.name, ErrReadView)
}

// QueryContext runs a query on a read pool.
func (r *Reader) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return read(r, ctx, func(ctx context.Context, q queryer) (*sql.Rows, error) {
		return q.QueryContext(ctx, query, args...)
	})
}

// QueryRowContext runs a query expected to return at most one row on a read
// pool.
func (r *Reader) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	row, err := read(r, ctx, func(ctx context.Context, q queryer) (*sql.Row, error) {
		row := q.QueryRowContext(ctx, query, args...)
		return row, row.Err()
	})
	if err != nil && (row == nil || err != row.Err()) {
		return errRow(err) // poolset's error (ErrNoReadPool, ErrPoolClosed), not the row's
	}
	return row
}

// queryer is what a read runs on: a pool's *sql.DB, or a replica's
// *sql.Conn that reached a read-your-writes position.
type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// read runs q for r on the pool pick chooses; for a read after a write
// under ReadYourWrites, on a connection of the read pool that reached the
// write (closed by a goroutine of its own once what q returned is closed)
// or else on the primary; and once more through the fallback when the read
// pool's connection turns out broken.
func read[T any](r *Reader, ctx context.Context, q func(context.Context, queryer) (T, error)) (T, error) {
	var zero T
	p, lb, rs, err := r.pick(ctx)
	if err != nil {
		return zero, err
	}
	if pos := positionFrom(ctx); pos != "" && p.role == roleRead {
		c, ok := r.caughtUp(ctx, p, lb, rs, pos)
		if ok {
			v, err := q(ctx, c)
			go c.Close() // returns once the rows or the row are closed
			return v, err
		}
		p, lb, rs = r.h.set.primary, &r.h.roLbl, r.h.primary
	}
	ctx2, cl := p.enter(ctx, lb, rs)
	v, err := q(ctx2, p.db)
	err = p.exit(cl, err)
	if err != nil && p.role == roleRead && p.isConnError(ctx, err) {
		p.markDown(err)
		if p, lb, rs, err = r.fallback(ctx, err); err != nil {
			return zero, err
		}
		ctx2, cl = p.enter(ctx, lb, rs)
		v, err = q(ctx2, p.db)
		err = p.exit(cl, err)
	}
	return v, err
}

// PrepareContext prepares a statement on a read pool (on the primary when
// none is usable, as the policy says). The statement stays on that pool.
func (r *Reader) PrepareContext(ctx context.Context, query string) (*sql.Stmt, error) {
	p, lb, rs, err := r.pick(ctx)
	if err != nil {
		return nil, err
	}
	ctx, cl := p.enter(ctx, lb, rs)
	st, err := p.db.PrepareContext(ctx, query)
	return st, p.exit(cl, err)
}

// BeginTx starts a read-only transaction on a read pool (on the primary
// when none is usable), for several reads that must see one snapshot.
func (r *Reader) BeginTx(ctx context.Context, opts *sql.TxOptions) (*sql.Tx, error) {
	p, lb, rs, err := r.pick(ctx)
	if err != nil {
		return nil, err
	}
	ro := sql.TxOptions{ReadOnly: true}
	if opts != nil {
		ro.Isolation = opts.Isolation
	}
	if lb.readOnly { // the transaction is read-only already
		lb = &r.h.lbl
	}
	ctx, cl := p.enter(ctx, lb, rs)
	tx, err := p.db.BeginTx(ctx, &ro)
	return tx, p.exit(cl, err)
}

// pick chooses the pool for a read: the usable read pool with the fewest
// connections in use, else the primary in a read-only transaction, or
// ErrNoReadPool, as the policy says.
func (r *Reader) pick(ctx context.Context) (*Pool, *label, *repoStats, error) {
	p, rs := r.h.set.route(r.h)
	switch {
	case p == nil:
		return r.fallback(ctx, nil)
	case p.role == rolePrimary:
		return p, &r.h.roLbl, rs, nil
	}
	return p, &r.h.lbl, rs, nil
}

// fallback serves a read whose read pool is unusable (cause, when a read
// pool failed it) as the policy says: on the primary, in a read-only
// transaction, or with ErrNoReadPool. Either is counted.
func (r *Reader) fallback(_ context.Context, cause error) (*Pool, *label, *repoStats, error) {
	h := r.h
	if h.policy == FailWithoutReadPool {
		h.primary.fallbackFails.Add(1)
		if cause == nil {
			return nil, nil, nil, fmt.Errorf("poolset: read by %s: %w", h.name, ErrNoReadPool)
		}
		return nil, nil, nil, fmt.Errorf("poolset: read by %s: %w: %w", h.name, ErrNoReadPool, cause)
	}
	h.primary.fallbacks.Add(1)
	markReads(h.primary)
	return h.set.primary, &h.roLbl, h.primary, nil
}

// caughtUp takes a connection of read pool p and waits, up to the set's
// ReadYourWritesWait, for its server to reach pos. When it does (ok), the
// read runs on that connection, which the caller closes; else the read
// goes to the primary. Either is counted.
func (r *Reader) caughtUp(ctx context.Context, p *Pool, lb *label, rs *repoStats, pos string) (*sql.Conn, bool) {
	h := r.h
	if pos != positionUnknown && p.cfg.Positions != nil {
		c, err := p.conn(ctx, lb, rs)
		if err == nil {
			// The wait's statements are poolset's, not the repository's:
			// they hold its connection but are not counted as its queries.
			own := *lb
			own.internal = true
			ok, werr := p.cfg.Positions.WaitPosition(context.WithValue(ctx, labelKey{}, &own), c, pos, h.set.rywWait)
			if werr == nil && ok {
				rs.causalReplica.Add(1)
				return c, true
			}
			c.Close()
		}
	}
	h.primary.causalPrimary.Add(1)
	markReads(h.primary)
	return nil, false
}

// errRow returns a *sql.Row whose Scan returns err: database/sql returns
// the error of a context that is done before it takes a connection.
func errRow(err error) *sql.Row {
	db := sql.OpenDB(noConnector{}) // never connects; closed before it could
	defer db.Close()
	return db.QueryRowContext(&doneCtx{Context: context.Background(), err: err}, "")
}

// doneCtx is a context that is done, with err.
type doneCtx struct {
	context.Context
	err error
}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func (c *doneCtx) Done() <-chan struct{} { return closedChan }
func (c *doneCtx) Err() error            { return c.err }

// noConnector is a driver.Connector that never connects.
type noConnector struct{}

var errNoConnector = errors.New("poolset: no connection")

func (noConnector) Connect(context.Context) (driver.Conn, error) { return nil, errNoConnector }
func (noConnector) Driver() driver.Driver                        { return noDriver{} }

type noDriver struct{}

func (noDriver) Open(string) (driver.Conn, error) { return nil, errNoConnector }
