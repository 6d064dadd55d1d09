package poolset

import (
	"context"
	"database/sql/driver"
	"fmt"
	"io"
	"reflect"
	"sync/atomic"
	"time"
)

// errClosedWithPool is the error of rows, a transaction or a statement
// used after the pool's Close closed their connection under them.
var errClosedWithPool = fmt.Errorf("%w: the connection was closed with its pool", ErrPoolClosed)

// tx is a transaction on a pool's connection. Under read-your-writes its
// Commit records the primary's position.
type tx struct {
	inner  driver.Tx
	c      *conn
	causal *causal
}

func (t *tx) Commit() error {
	return t.end(func() error {
		if err := t.inner.Commit(); err != nil {
			return err
		}
		if t.causal != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			t.c.recordPosition(ctx, t.causal)
		}
		return nil
	})
}

func (t *tx) Rollback() error { return t.end(t.inner.Rollback) }

// end runs f, which ends the transaction, with c.mu held, unless the
// connection was closed with its pool.
func (t *tx) end(f func() error) error {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	if t.c.closed {
		return errClosedWithPool
	}
	t.c.tx = nil
	return f()
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
		return errClosedWithPool
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
