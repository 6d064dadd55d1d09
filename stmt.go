package poolset

import (
	"context"
	"database/sql/driver"
	"errors"
	"sync/atomic"
	"time"
)

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
// counts it, and runs f with c.mu held, unless the connection was closed
// with its pool.
func (s *stmt) run(ctx context.Context, kind leaseKind, f func() error) error {
	if _, err := s.c.use(ctx, kind, s.repo); err != nil {
		return err
	}
	if err := s.c.lock(); err != nil {
		return err
	}
	defer s.c.mu.Unlock()
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
