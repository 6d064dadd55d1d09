package poolset

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"log/slog"
	"time"
)

// Defaults applied by Open to a Config or PoolConfig field left at its zero
// value. They are stated here once; a program that shows them (a CLI's flag
// defaults) refers to these constants.
const (
	// DefaultMaxOpen is the most connections a pool opens, as in knex's
	// default and the seed service.
	DefaultMaxOpen = 10
	// DefaultMaxLifetime is how long a connection is reused. It stays under
	// the five minutes go-sql-driver/mysql advises, so that no server or
	// middlebox closes a connection the pool still trusts.
	DefaultMaxLifetime = 3 * time.Minute
	// DefaultMaxIdleTime is how long a connection may sit idle before it is
	// closed.
	DefaultMaxIdleTime = time.Minute
	// DefaultAcquireTimeout bounds the wait for a connection. database/sql
	// has no such bound (only the caller's ctx); poolset adds one so that a
	// leak shows up as a clear error, not a hang.
	DefaultAcquireTimeout = 5 * time.Second
	// DefaultCloseWait is how long Close waits for borrowed connections to
	// come back before it closes them itself.
	DefaultCloseWait = 2 * time.Second
	// DefaultHealthInterval is how often a read pool's health check runs,
	// so that a failing replica leaves the rotation within about a second.
	DefaultHealthInterval = 250 * time.Millisecond
	// DefaultReadYourWritesWait bounds how long a read under ReadYourWrites
	// waits for a read pool to catch up before it goes to the primary.
	DefaultReadYourWritesWait = 100 * time.Millisecond
)

// Config describes a Set: one primary pool, zero or more read pools, and
// the set-wide settings.
type Config struct {
	// Primary is the pool for writes, transactions and reads that must be
	// current. Required.
	Primary PoolConfig
	// Reads are pools for reads that may be stale (replicas, or SQLite's
	// read-only pool). Each must be ReadOnly. Default: none, so every read
	// goes to the primary.
	Reads []PoolConfig
	// LeakThreshold, when positive, logs every connection, transaction or
	// rows held longer than it, with the repository and the stack that took
	// it. Default: 0 (off). Taking the stack costs about a microsecond an
	// acquisition.
	LeakThreshold time.Duration
	// Logger receives warnings (leaks, read pools unreachable at start).
	// Default: slog.Default().
	Logger *slog.Logger
	// ReadYourWritesWait bounds how long a read under ReadYourWrites waits
	// for a read pool to reach the last write. Default:
	// DefaultReadYourWritesWait (100 ms).
	ReadYourWritesWait time.Duration
}

// PoolConfig describes one SQL pool. Packages mysql and sqlite build one
// (mysql.Primary, mysql.Replica, sqlite.PoolConfigs); fields may be edited
// before Open.
type PoolConfig struct {
	// Name identifies the pool in stats, errors and the tree. Default:
	// "primary" for the primary, "read-N" for read pools.
	Name string
	// Kind names the backend for display: "mysql", "sqlite".
	Kind string
	// Address is how the pool is shown: its DSN with any password replaced
	// by ***. It is never used to connect.
	Address string
	// Connector opens the pool's connections. Required.
	Connector driver.Connector
	// ReadOnly says the connector opens read-only sessions, so that a write
	// sent to this pool fails. Read pools must be ReadOnly.
	ReadOnly bool
	// MaxOpen is the most connections open at once. Default:
	// DefaultMaxOpen (10). Ping alone opens one beyond it, for as long as
	// it takes to answer.
	MaxOpen int
	// MaxIdle is the most idle connections kept. Default: MaxOpen, so that a
	// busy pool does not close and reopen connections.
	MaxIdle int
	// MaxLifetime is how long a connection is reused. Default:
	// DefaultMaxLifetime (3 min); negative: forever.
	MaxLifetime time.Duration
	// MaxIdleTime is how long a connection may stay idle. Default:
	// DefaultMaxIdleTime (1 min); negative: forever.
	MaxIdleTime time.Duration
	// AcquireTimeout bounds the wait for a connection, within the caller's
	// ctx. Default: DefaultAcquireTimeout (5 s); negative: only the
	// caller's ctx.
	AcquireTimeout time.Duration
	// CloseWait is how long Close waits for borrowed connections before it
	// reports them and closes them itself. Default: DefaultCloseWait (2 s).
	CloseWait time.Duration
	// IsConnError, when set, tells a broken-connection error of this
	// backend's driver from a statement error, so that a read whose read
	// pool's server went away can be retried on the primary. Errors that
	// wrap driver.ErrBadConn, net.Error or io.ErrUnexpectedEOF count as
	// broken connections in any case.
	IsConnError func(error) bool
	// Health, when set on a read pool, decides whether the pool takes reads
	// and reports its replication lag (see HealthCheck). Default: none
	// (always in the rotation while open). mysql.Replica sets a
	// mysql.ReplicaCheck. It is ignored on the primary.
	Health HealthCheck
	// HealthInterval is how often Health runs. Default:
	// DefaultHealthInterval (250 ms).
	HealthInterval time.Duration
	// Positions, when set on the primary and on a read pool, lets reads
	// under ReadYourWrites go to that read pool once it has applied the
	// last write (see Positions). Set the same value on both. Default: none
	// (such reads go to the primary). mysql.Primary and mysql.Replica set
	// mysql.GTIDPositions.
	Positions Positions
	// Interrupt, when set, ends the statements running now on the pool's
	// connections without closing the connections, and returns how many it
	// ended (MySQL: KILL QUERY from a connection of its own). A shutdown
	// that cannot wait for its statements uses it instead of cancelling
	// their contexts, which makes most drivers cut the connection (the
	// server then counts an aborted client). Default: none (Pool.Interrupt
	// returns ErrInterruptUnsupported).
	Interrupt func(ctx context.Context) (int, error)
}

// HealthCheck decides whether a read pool takes reads, and reports how far
// behind its server is. Open runs Check once, and then every
// HealthInterval, on a connection of its own (one of the pool's MaxOpen:
// the pool lends MaxOpen-1), so that a hung server is noticed even while
// every lent connection is stuck. While Check returns an error the pool is
// out of the rotation and its reads go to another read pool or the
// primary. A check that has not returned after two intervals takes the
// pool out at once and counts as failed; its ctx ends after 5 s (or four
// intervals, if longer), or two intervals into Close. Open waits at most
// two intervals for the first check.
//
// Check and Lag are called from the set's goroutines and from Stats, so
// an implementation must be safe for concurrent use.
type HealthCheck interface {
	// Check returns nil when the pool's server may take reads.
	Check(ctx context.Context, conn *sql.Conn) error
	// Lag reports the replication lag that Check last measured, and
	// whether it is known. Stats, the tree and the metrics show it.
	Lag() (time.Duration, bool)
}

// HealthFunc makes a function a HealthCheck whose lag is never known.
type HealthFunc func(ctx context.Context, conn *sql.Conn) error

// Check calls f.
func (f HealthFunc) Check(ctx context.Context, conn *sql.Conn) error { return f(ctx, conn) }

// Lag reports an unknown lag.
func (HealthFunc) Lag() (time.Duration, bool) { return 0, false }

// Positions reads and waits for replication positions, for reads under
// ReadYourWrites (see ReadYourWrites): the primary reads the position a
// write reached, a read pool waits for its server to reach it. One value
// serves both sides; its methods must be safe for concurrent use.
type Positions interface {
	// PositionQuery returns a query without arguments that returns, as
	// text, the replication position the last commit of the connection it
	// runs on reached (MariaDB: SELECT @@last_gtid). The primary runs it
	// on the connection that committed, right after the commit, at the
	// driver level: the text protocol, no prepared statement.
	PositionQuery() string
	// WaitPosition waits up to timeout for the server of conn, a read
	// pool's connection, to have applied pos, and reports whether it did
	// (MariaDB: MASTER_GTID_WAIT).
	WaitPosition(ctx context.Context, conn *sql.Conn, pos string, timeout time.Duration) (bool, error)
}

// setDefaults fills in the fields left at their zero value; name is the
// pool's default name.
func (c *PoolConfig) setDefaults(name string) {
	if c.Name == "" {
		c.Name = name
	}
	if c.MaxOpen <= 0 {
		c.MaxOpen = DefaultMaxOpen
	}
	if c.MaxIdle <= 0 {
		c.MaxIdle = c.MaxOpen
	}
	if c.MaxLifetime == 0 {
		c.MaxLifetime = DefaultMaxLifetime
	}
	if c.MaxIdleTime == 0 {
		c.MaxIdleTime = DefaultMaxIdleTime
	}
	if c.AcquireTimeout == 0 {
		c.AcquireTimeout = DefaultAcquireTimeout
	}
	if c.CloseWait <= 0 {
		c.CloseWait = DefaultCloseWait
	}
	if c.HealthInterval <= 0 {
		c.HealthInterval = DefaultHealthInterval
	}
}
