// Package mysql builds poolset pools for MySQL and MariaDB servers through
// go-sql-driver/mysql: a primary (Primary) and read pools on replicas
// (Replica), with a replica health check that measures lag (ReplicaCheck)
// and MariaDB's GTID positions for reads under ReadYourWrites
// (GTIDPositions). It tells the driver's errors apart (IsConnError,
// IsRetryable, IsDuplicateKey, IsReadOnly) and reads the server-side
// figures that prove a close was clean (GlobalStatus, ConnectionsTo,
// Processes).
//
// It does not own the pools (package poolset opens, routes and closes
// them), a schema or migrations, or the servers and their replication
// (package poolsettest sets those up for tests).
package mysql

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/poolset/poolset"
)

// Primary returns the poolset.PoolConfig of a primary: read-write sessions
// on the server at dsn, in go-sql-driver/mysql form
// (user:password@tcp(host:port)/db?params), with GTIDPositions, so that
// reads under poolset.ReadYourWrites can wait for a replica to reach a
// write, and Interrupt (see below).
//
// Primary and Replica both set, unless dsn says otherwise, parseTime=true,
// interpolateParams=true (statements with arguments take one round trip
// instead of three), timeout=5s (DefaultDialTimeout), readTimeout=5m
// (DefaultReadTimeout) and writeTimeout=30s (DefaultWriteTimeout). Both
// give the pool Interrupt (KILL QUERY on its own connections) unless the
// DSN dials through a network of its own. Pool sizes and timeouts are
// poolset's defaults; edit the returned config to change them. The error,
// if any, never contains the password.
func Primary(dsn string) (poolset.PoolConfig, error) {
	return newPoolConfig(dsn)
}

// Replica returns the poolset.PoolConfig of a read pool on the replica at
// dsn (see Primary for the DSN and what both set). Every session is made
// read-only (SET SESSION TRANSACTION READ ONLY) as it connects, so that a
// write sent to the pool fails on the server instead of writing. Its
// Health is a NewReplicaCheck(maxLag), which takes the pool out of the
// rotation while the replica does not replicate or lags more than maxLag;
// maxLag 0 means DefaultMaxLag, and a negative maxLag is an error. A
// server that is not a replica at all passes the check: the pool is then
// a read-only pool on a standalone server. Its Positions are
// GTIDPositions, as on the primary.
func Replica(dsn string, maxLag time.Duration) (poolset.PoolConfig, error) {
	if maxLag < 0 {
		return poolset.PoolConfig{}, fmt.Errorf("mysql: replica %s: max lag %s: must not be negative", poolset.Redact(dsn), maxLag)
	}
	pc, err := newPoolConfig(dsn)
	if err != nil {
		return pc, err
	}
	pc.Connector = &readOnlyConnector{Connector: pc.Connector}
	pc.ReadOnly = true
	pc.Health = NewReplicaCheck(maxLag)
	return pc, nil
}

// newPoolConfig returns what Primary and Replica have in common.
func newPoolConfig(dsn string) (poolset.PoolConfig, error) {
	cfg, err := driverConfig(dsn)
	if err != nil {
		return poolset.PoolConfig{}, err
	}
	threads := trackThreads(cfg)
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return poolset.PoolConfig{}, fmt.Errorf("mysql: invalid DSN %s: %w", poolset.Redact(dsn), err)
	}
	pc := poolset.PoolConfig{
		Kind:        "mysql",
		Address:     poolset.Redact(dsn),
		Connector:   conn,
		IsConnError: IsConnError,
		Positions:   GTIDPositions{},
	}
	if threads != nil {
		pc.Interrupt = func(ctx context.Context) (int, error) { return threads.interrupt(ctx, conn) }
	}
	return pc, nil
}

// Timeouts Primary, Replica and CreateDatabase put in a DSN that sets
// none; each is overridden by the DSN's own timeout, readTimeout or
// writeTimeout parameter.
const (
	// DefaultDialTimeout bounds opening the TCP connection. The driver has
	// none by default, so a server that drops SYNs held a start for
	// minutes. The handshake after it is bounded by the caller's ctx
	// (poolset's Open and Ping bound theirs).
	DefaultDialTimeout = 5 * time.Second
	// DefaultReadTimeout bounds each wait for the server's answer: longer
	// than any statement should run (a row lock waits 50 s by MariaDB's
	// default innodb_lock_wait_timeout), since the driver closes the
	// connection when it passes. It only frees connections stuck on a
	// server that never answers; a hung server is noticed much sooner by
	// pinging it on a connection of its own, as the shop worker does.
	DefaultReadTimeout = 5 * time.Minute
	// DefaultWriteTimeout bounds each write to the server: a server that
	// does not read for that long is hung.
	DefaultWriteTimeout = 30 * time.Second
)

// driverConfig parses dsn and sets the parameters it leaves out to
// poolset's defaults (see Primary). The error never contains the password.
func driverConfig(dsn string) (*mysql.Config, error) {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("mysql: invalid DSN %s: %w", poolset.Redact(dsn), err)
	}
	q := paramsOf(dsn)
	if !q["parseTime"] {
		cfg.ParseTime = true
	}
	if !q["interpolateParams"] {
		cfg.InterpolateParams = true
	}
	if !q["timeout"] {
		cfg.Timeout = DefaultDialTimeout
	}
	if !q["readTimeout"] {
		cfg.ReadTimeout = DefaultReadTimeout
	}
	if !q["writeTimeout"] {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	return cfg, nil
}

// paramsOf reports which query parameters dsn sets explicitly.
func paramsOf(dsn string) map[string]bool {
	out := map[string]bool{}
	i := strings.LastIndex(dsn, "?")
	if i < 0 || strings.LastIndex(dsn, "/") > i {
		return out
	}
	for _, kv := range strings.Split(dsn[i+1:], "&") {
		k, _, _ := strings.Cut(kv, "=")
		out[k] = true
	}
	return out
}

// readOnlyConnector makes each new session read-only.
type readOnlyConnector struct{ driver.Connector }

func (c *readOnlyConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	ex, ok := conn.(driver.ExecerContext)
	if !ok {
		conn.Close()
		return nil, errors.New("mysql: driver connection cannot execute statements")
	}
	if _, err := ex.ExecContext(ctx, "SET SESSION TRANSACTION READ ONLY", nil); err != nil {
		conn.Close()
		return nil, fmt.Errorf("mysql: make session read-only: %w", err)
	}
	return conn, nil
}

// CreateDatabase creates database name on the server at dsn if it does not
// exist. dsn's own database is not used. Connecting is bounded by
// DefaultDialTimeout (or ctx, if sooner), handshake included.
func CreateDatabase(ctx context.Context, dsn, name string) error {
	cfg, err := driverConfig(dsn)
	if err != nil {
		return err
	}
	cfg.DBName = ""
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return fmt.Errorf("mysql: invalid DSN %s: %w", poolset.Redact(dsn), err)
	}
	db := sql.OpenDB(conn)
	defer db.Close()
	// A server that accepts the TCP connection but never answers (a
	// stopped process) would hold the handshake for ever: bound it.
	cctx, cancel := context.WithTimeout(ctx, DefaultDialTimeout)
	c, err := db.Conn(cctx)
	cancel()
	if err != nil {
		if cctx.Err() != nil && ctx.Err() == nil {
			return fmt.Errorf("mysql: create database %s on %s: the server did not answer within %s", name, poolset.Redact(dsn), DefaultDialTimeout)
		}
		return fmt.Errorf("mysql: create database %s on %s: %w", name, poolset.Redact(dsn), err)
	}
	defer c.Close()
	if _, err := c.ExecContext(ctx, "CREATE DATABASE IF NOT EXISTS `"+strings.ReplaceAll(name, "`", "``")+"`"); err != nil {
		return fmt.Errorf("mysql: create database %s on %s: %w", name, poolset.Redact(dsn), err)
	}
	return nil
}

// DatabaseName returns the database dsn names.
func DatabaseName(dsn string) (string, error) {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return "", fmt.Errorf("mysql: invalid DSN %s: %w", poolset.Redact(dsn), err)
	}
	return cfg.DBName, nil
}
