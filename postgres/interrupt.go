package postgres

import (
	"context"
	"database/sql/driver"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// Interrupting a statement: cancelling its context makes pgx send a cancel
// request and, if the server does not answer in time, close the
// connection. pg_cancel_backend, sent from another connection, ends the
// statement on the server instead: it fails with SQLSTATE 57014
// (IsInterrupted), its transaction can be rolled back, and the connection
// stays usable. That needs the backend PID of each of the pool's
// connections, which backends records as they connect and forgets as they
// close.

// backends records the backend PIDs of the open connections of one
// connector. It is safe for concurrent use.
type backends struct {
	driver.Connector // stdlib's, for cfg

	cfg *pgx.ConnConfig // for Interrupt's own connection

	mu   sync.Mutex
	pids map[uint32]struct{}
}

// trackBackends returns a connector for cfg whose connections record their
// backend PIDs.
func trackBackends(cfg *pgx.ConnConfig) *backends {
	return &backends{Connector: stdlib.GetConnector(*cfg), cfg: cfg.Copy(), pids: make(map[uint32]struct{})}
}

// Connect opens a connection and records its backend PID until it closes.
func (b *backends) Connect(ctx context.Context) (driver.Conn, error) {
	c, err := b.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	sc, ok := c.(*stdlib.Conn)
	if !ok {
		return c, nil
	}
	pid := sc.Conn().PgConn().PID()
	b.mu.Lock()
	b.pids[pid] = struct{}{}
	b.mu.Unlock()
	return &trackedConn{Conn: sc, b: b, pid: pid}, nil
}

// trackedConn is a pool connection: stdlib's, with all of its methods, and
// a Close that forgets its PID.
type trackedConn struct {
	*stdlib.Conn
	b    *backends
	pid  uint32
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.b.mu.Lock()
		delete(c.b.pids, c.pid)
		c.b.mu.Unlock()
	})
	return c.Conn.Close()
}

func (b *backends) snapshot() []uint32 {
	b.mu.Lock()
	defer b.mu.Unlock()
	pids := make([]uint32, 0, len(b.pids))
	for pid := range b.pids {
		pids = append(pids, pid)
	}
	return pids
}

// interrupt cancels, with pg_cancel_backend, the statements that b's
// connections run now (pg_stat_activity's state active), asking on a
// connection of its own, which it closes cleanly before it returns. It
// returns how many it cancelled.
func (b *backends) interrupt(ctx context.Context) (int, error) {
	pids := b.snapshot()
	if len(pids) == 0 {
		return 0, nil
	}
	conn, err := pgx.ConnectConfig(ctx, b.cfg.Copy())
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var n int
	err = conn.QueryRow(ctx, `SELECT count(*) FILTER (WHERE pg_cancel_backend(pid))
		FROM pg_stat_activity
		WHERE pid = ANY($1) AND state = 'active' AND pid <> pg_backend_pid()`, pids).Scan(&n)
	return n, err
}

// codeQueryCanceled is the SQLSTATE of a statement ended by a cancel.
const codeQueryCanceled = "57014"

// IsInterrupted reports whether err is a statement cancelled on the server
// (SQLSTATE 57014), as Pool.Interrupt cancels them: its connection is
// still usable.
func IsInterrupted(err error) bool { return code(err) == codeQueryCanceled }
