package poolset

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

// Handle is a repository's labelled view of a Set: every connection it takes
// is counted against the repository's name on the pool it comes from.
// Statements on a Handle go to the primary; reads that may be stale go
// through Read. A Handle is cheap, safe for concurrent use, and never opens
// or closes a pool.
type Handle struct {
	set     *Set
	name    string
	primary *repoStats
	policy  ReadPolicy
	reads   []atomic.Pointer[repoStats] // per read pool, set on first use
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

// ExecContext runs a statement on the primary.
func (h *Handle) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	h.primary.writes.Store(true)
	l, err := h.set.primary.acquire(ctx, h.primary, kindExec)
	if err != nil {
		return nil, err
	}
	defer l.release()
	h.primary.queries.Add(1)
	res, err := l.conn.ExecContext(ctx, query, args...)
	if err == nil {
		l.recordPosition(ctx, causalFrom(ctx))
	}
	return res, err
}

// QueryContext runs a query on the primary. The returned Rows hold a
// connection until Next returns false or Close is called.
func (h *Handle) QueryContext(ctx context.Context, query string, args ...any) (*Rows, error) {
	h.primary.reads.Store(true)
	l, err := h.set.primary.acquire(ctx, h.primary, kindRows)
	if err != nil {
		return nil, err
	}
	return l.query(ctx, query, args)
}

// QueryRowContext runs a query expected to return at most one row on the
// primary. The connection is held until Scan is called.
func (h *Handle) QueryRowContext(ctx context.Context, query string, args ...any) *Row {
	h.primary.reads.Store(true)
	l, err := h.set.primary.acquire(ctx, h.primary, kindRow)
	if err != nil {
		return &Row{err: err}
	}
	return l.queryRow(ctx, query, args)
}

// BeginTx starts a transaction on the primary. Transactions always go to
// the primary, whatever opts says; use Read().BeginTx for a read-only
// transaction on a read pool.
func (h *Handle) BeginTx(ctx context.Context, opts *sql.TxOptions) (*Tx, error) {
	h.primary.writes.Store(true)
	l, err := h.set.primary.acquire(ctx, h.primary, kindTx)
	if err != nil {
		return nil, err
	}
	tx, err := l.beginTx(ctx, opts)
	if err == nil {
		tx.causal = causalFrom(ctx)
	}
	return tx, err
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

// Reader runs reads that may be stale on a read pool. Sessions on read
// pools are read-only, and a read that goes to the primary because no read
// pool is usable runs in a read-only transaction there, so a write sent
// through a Reader fails instead of writing, in a set with read pools or
// without. (SQLite does not enforce read-only transactions; its read pool is
// only left when closed.) A read whose read
// pool cannot give a working connection is tried once on the primary
// (FallbackToPrimary) or fails with ErrNoReadPool (FailWithoutReadPool);
// either is counted, and the read pool leaves the rotation until its next
// health check passes.
type Reader struct{ h *Handle }

// QueryContext runs a query on a read pool.
func (r *Reader) QueryContext(ctx context.Context, query string, args ...any) (*Rows, error) {
	return r.query(ctx, kindRows, query, args)
}

// QueryRowContext runs a query expected to return at most one row on a read
// pool.
func (r *Reader) QueryRowContext(ctx context.Context, query string, args ...any) *Row {
	rows, err := r.query(ctx, kindRow, query, args)
	if err != nil {
		return &Row{err: err}
	}
	return &Row{rows: rows.Rows, l: rows.l}
}

// query runs a query on a lease of kind from a read pool, and once more
// through the fallback when the read pool's connection is broken.
func (r *Reader) query(ctx context.Context, kind leaseKind, query string, args []any) (*Rows, error) {
	l, err := r.acquire(ctx, kind)
	if err != nil {
		return nil, err
	}
	rows, err := l.query(ctx, query, args)
	if err != nil && l.pool.role == roleRead && l.pool.isConnError(ctx, err) {
		l.pool.markDown(err)
		if l, err = r.fallback(ctx, kind, err); err == nil {
			return l.query(ctx, query, args)
		}
	}
	return rows, err
}

// BeginTx starts a transaction on a read pool, for several reads that must
// see one snapshot.
func (r *Reader) BeginTx(ctx context.Context, opts *sql.TxOptions) (*Tx, error) {
	l, err := r.acquire(ctx, kindTx)
	if err != nil {
		return nil, err
	}
	return l.beginTx(ctx, opts)
}

// acquire borrows a connection from the pool the set routes r's reads to,
// falling back when a read pool cannot give one.
func (r *Reader) acquire(ctx context.Context, kind leaseKind) (*lease, error) {
	p, rs := r.h.set.route(r.h)
	if p == nil {
		return r.fallback(ctx, kind, nil)
	}
	l, err := p.acquire(ctx, rs, kind)
	if err != nil && p.role == roleRead && ctx.Err() == nil {
		if !errors.Is(err, ErrAcquireTimeout) {
			p.markDown(err)
		}
		return r.fallback(ctx, kind, err)
	}
	// Only a read after a write under the context waits, and is counted.
	if c := causalFrom(ctx); err == nil && c != nil && c.get() != "" && p.role == roleRead {
		if !l.caughtUp(ctx, c, r.h.set.rywWait) {
			l.release()
			r.h.primary.causalPrimary.Add(1)
			r.h.primary.reads.Store(true)
			return readOnly(r.h.set.primary.acquire(ctx, r.h.primary, kind))
		}
		rs.causalReplica.Add(1)
	}
	return readOnly(l, err)
}

// readOnly marks a lease on the primary that serves a Reader, so that its
// statements run in a read-only transaction (which costs two round trips
// more): a write sent through a Reader then fails on the primary as on a
// read pool's read-only session, in a set without read pools (development)
// as in one with them (production).
func readOnly(l *lease, err error) (*lease, error) {
	if err == nil && l.pool.role == rolePrimary {
		l.readOnly.Store(true)
	}
	return l, err
}

// fallback serves a read whose read pool is unusable (cause, when a
// read pool failed it) as h's policy says: on the primary, or with
// ErrNoReadPool. Either is counted.
func (r *Reader) fallback(ctx context.Context, kind leaseKind, cause error) (*lease, error) {
	h := r.h
	if h.policy == FailWithoutReadPool {
		h.primary.fallbackFails.Add(1)
		if cause == nil {
			return nil, fmt.Errorf("poolset: read by %s: %w", h.name, ErrNoReadPool)
		}
		return nil, fmt.Errorf("poolset: read by %s: %w: %w", h.name, ErrNoReadPool, cause)
	}
	h.primary.fallbacks.Add(1)
	h.primary.reads.Store(true)
	return readOnly(h.set.primary.acquire(ctx, h.primary, kind))
}

// queryer returns what l's statements run on: the connection, or for a
// Reader's lease on the primary a read-only transaction on it, which the
// lease rolls back when it is released.
func (l *lease) queryer(ctx context.Context) (interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}, error) {
	if !l.readOnly.Load() {
		return l.conn, nil
	}
	tx, err := l.conn.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, err
	}
	l.setTx(tx)
	return tx, nil
}

func (l *lease) query(ctx context.Context, q string, args []any) (*Rows, error) {
	l.repo.queries.Add(1)
	qr, err := l.queryer(ctx)
	if err != nil {
		l.release()
		return nil, err
	}
	rows, err := qr.QueryContext(ctx, q, args...)
	if err != nil {
		l.release()
		return nil, err
	}
	l.setRows(rows)
	return &Rows{Rows: rows, l: l}, nil
}

func (l *lease) queryRow(ctx context.Context, q string, args []any) *Row {
	rows, err := l.query(ctx, q, args)
	if err != nil {
		return &Row{err: err}
	}
	return &Row{rows: rows.Rows, l: l}
}

func (l *lease) beginTx(ctx context.Context, opts *sql.TxOptions) (*Tx, error) {
	if l.readOnly.Swap(false) { // the transaction is the caller's to end
		ro := sql.TxOptions{ReadOnly: true}
		if opts != nil {
			ro.Isolation = opts.Isolation
		}
		opts = &ro
	}
	tx, err := l.conn.BeginTx(ctx, opts)
	if err != nil {
		l.release()
		return nil, err
	}
	l.repo.txs.Add(1)
	l.setTx(tx)
	return &Tx{Tx: tx, l: l}, nil
}

// Rows is a *sql.Rows whose connection goes back to its pool, and is
// counted as returned, when Next returns false or Close is called. Only the
// first result set is read.
type Rows struct {
	*sql.Rows
	l *lease
}

// Next prepares the next row for Scan; at the end it closes the rows and
// returns the connection.
func (r *Rows) Next() bool {
	if r.Rows.Next() {
		return true
	}
	r.Close()
	return false
}

// Close closes the rows and returns the connection. It is idempotent.
func (r *Rows) Close() error {
	err := r.Rows.Close()
	r.l.release()
	return err
}

// Row is the result of QueryRowContext. Its connection is held until Scan.
type Row struct {
	rows *sql.Rows
	l    *lease
	err  error
}

// Err returns the error, if any, met running the query.
func (r *Row) Err() error { return r.err }

// Scan copies the row's columns into dest and returns the connection. It
// returns sql.ErrNoRows when the query returned no row.
func (r *Row) Scan(dest ...any) error {
	if r.err != nil {
		return r.err
	}
	defer r.l.release()
	defer r.rows.Close()
	if !r.rows.Next() {
		if err := r.rows.Err(); err != nil {
			return err
		}
		return sql.ErrNoRows
	}
	if err := r.rows.Scan(dest...); err != nil {
		return err
	}
	return r.rows.Close()
}

// Tx is a *sql.Tx whose connection goes back to its pool, and is counted as
// returned, at Commit or Rollback. Statements in it count against the
// repository that began it.
type Tx struct {
	*sql.Tx
	l      *lease
	causal *causal // set when begun under ReadYourWrites
}

// ExecContext runs a statement in the transaction.
func (t *Tx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	t.l.repo.queries.Add(1)
	return t.Tx.ExecContext(ctx, query, args...)
}

// QueryContext runs a query in the transaction.
func (t *Tx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	t.l.repo.queries.Add(1)
	return t.Tx.QueryContext(ctx, query, args...)
}

// QueryRowContext runs a query expected to return at most one row in the
// transaction.
func (t *Tx) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	t.l.repo.queries.Add(1)
	return t.Tx.QueryRowContext(ctx, query, args...)
}

// Commit commits the transaction and returns the connection. Under
// ReadYourWrites it first records the primary's position, which costs one
// round trip.
func (t *Tx) Commit() error {
	defer t.l.release()
	err := t.Tx.Commit()
	if err == nil && t.causal != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		t.l.recordPosition(ctx, t.causal)
	}
	return err
}

// Rollback aborts the transaction and returns the connection. After Commit
// it returns sql.ErrTxDone and does nothing else.
func (t *Tx) Rollback() error {
	defer t.l.release()
	return t.Tx.Rollback()
}
