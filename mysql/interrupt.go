package mysql

import (
	"bytes"
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"

	"github.com/go-sql-driver/mysql"
)

// Interrupting a statement: cancelling its context makes go-sql-driver/mysql
// close the connection under it, which the server counts as an aborted
// client. KILL QUERY, sent from another connection, ends the statement on
// the server instead: it fails with "Query execution was interrupted", its
// transaction can be rolled back, and the connection stays usable. That
// needs the server's id of each connection (CONNECTION_ID()), which the
// driver reads from the server's first packet but does not expose; so the
// pool's connections are dialled through threads.dial, which reads the id
// from that packet as it passes.

// threads records the server's connection ids of the open connections of
// one connector. It is safe for concurrent use.
type threads struct {
	dial func(ctx context.Context, network, addr string) (net.Conn, error)

	mu  sync.Mutex
	ids map[uint32]struct{}
}

// trackThreads makes cfg's connections record their ids in the returned
// threads, unless cfg already dials in a way of its own (a DialFunc, or a
// network other than tcp and unix, which may be registered with
// mysql.RegisterDialContext): then it returns nil.
func trackThreads(cfg *mysql.Config) *threads {
	if cfg.DialFunc != nil {
		return nil
	}
	switch cfg.Net {
	case "tcp", "tcp4", "tcp6", "unix":
	default:
		return nil
	}
	var d net.Dialer
	t := &threads{dial: d.DialContext, ids: make(map[uint32]struct{})}
	cfg.DialFunc = t.dialTracked
	return t
}

func (t *threads) dialTracked(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := t.dial(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &trackedConn{Conn: c, t: t}, nil
}

func (t *threads) snapshot() map[uint32]struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	ids := make(map[uint32]struct{}, len(t.ids))
	for id := range t.ids {
		ids[id] = struct{}{}
	}
	return ids
}

// trackedConn is a pool connection's socket: it reads the connection id from
// the server's handshake packet and keeps it in t while the socket is open.
type trackedConn struct {
	net.Conn
	t *threads

	mu     sync.Mutex
	head   []byte // the handshake's first bytes, until the id is read
	done   bool   // the id is read, or never will be
	id     uint32
	has    bool
	closed bool
}

// maxHandshakeHead bounds what trackedConn keeps of the handshake: the
// header, the protocol version, the server's version string and the id.
const maxHandshakeHead = 256

func (c *trackedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.sniff(p[:n])
	}
	return n, err
}

// sniff reads the connection id from the initial handshake packet: a 4-byte
// packet header, protocol version 10, the server version ending in NUL, then
// the id as 4 bytes, little-endian.
func (c *trackedConn) sniff(b []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done {
		return
	}
	c.head = append(c.head, b[:min(len(b), maxHandshakeHead-len(c.head))]...)
	h := c.head
	if len(h) < 5 {
		return
	}
	if h[4] != 10 { // an error packet, or a protocol this does not know
		c.done, c.head = true, nil
		return
	}
	end := bytes.IndexByte(h[5:], 0)
	switch {
	case end >= 0 && len(h) >= 5+end+1+4:
		c.id = binary.LittleEndian.Uint32(h[5+end+1:])
		c.done, c.has, c.head = true, true, nil
		if !c.closed {
			c.t.mu.Lock()
			c.t.ids[c.id] = struct{}{}
			c.t.mu.Unlock()
		}
	case len(h) >= maxHandshakeHead:
		c.done, c.head = true, nil
	}
}

func (c *trackedConn) Close() error {
	c.mu.Lock()
	if !c.closed {
		c.closed = true
		if c.has {
			c.t.mu.Lock()
			delete(c.t.ids, c.id)
			c.t.mu.Unlock()
		}
	}
	c.mu.Unlock()
	return c.Conn.Close()
}

// interrupt ends, with KILL QUERY, the statements that the connections of t
// run now, asking on a connection of its own from connector, which it
// closes cleanly before it returns. It returns how many it ended.
func (t *threads) interrupt(ctx context.Context, connector driver.Connector) (int, error) {
	ours := t.snapshot()
	if len(ours) == 0 {
		return 0, nil
	}
	db := sql.OpenDB(connector)
	defer db.Close()
	db.SetMaxOpenConns(1)
	conn, err := db.Conn(ctx)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	self, ps, err := processesFrom(ctx, conn)
	if err != nil {
		return 0, err
	}
	n := 0
	var errs []error
	for _, p := range ps {
		id, err := strconv.ParseUint(p.ID, 10, 32)
		if err != nil || p.ID == self {
			continue
		}
		if _, mine := ours[uint32(id)]; !mine || (p.Command != "Query" && p.Command != "Execute") {
			continue
		}
		// The id is a number: no argument, so no prepared statement.
		if _, err := conn.ExecContext(ctx, "KILL QUERY "+strconv.FormatUint(id, 10)); err != nil {
			if isNumber(err, erNoSuchThread) { // it ended meanwhile
				continue
			}
			errs = append(errs, fmt.Errorf("kill query %d: %w", id, err))
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

// erNoSuchThread is KILL's error for a connection that has gone.
const erNoSuchThread = 1094

// IsInterrupted reports whether err is a statement ended by KILL QUERY
// (Pool.Interrupt): its connection is still usable.
func IsInterrupted(err error) bool { return isNumber(err, erQueryInterrupted) }

// erQueryInterrupted is the error of a statement ended by KILL QUERY.
const erQueryInterrupted = 1317
