// Package mysql builds poolset pools for MySQL and MariaDB servers through
// go-sql-driver/mysql, and reads the server-side figures (connections,
// aborted clients) that prove a release was clean.
package mysql

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/poolset/poolset"
)

// PoolConfig returns a poolset.PoolConfig for the server at dsn, in
// go-sql-driver/mysql form (user:password@tcp(host:port)/db?params). When
// readOnly is true every session is made read-only (SET SESSION TRANSACTION
// READ ONLY) as it connects, so that a write sent to the pool fails on the
// server instead of writing, and the pool gets a replica health check
// and its lag (Health and Lag from one NewReplicaCheck(DefaultMaxLag)) and
// WaitPosition; use it for replicas. To change the limit, set Health and
// Lag together from one NewReplicaCheck: a Lag left from another check
// reports nothing. Otherwise it gets Position, for read-your-writes.
//
// Unless dsn says otherwise it sets parseTime=true,
// interpolateParams=true (statements with arguments take one round trip
// instead of three), timeout=5s (DefaultDialTimeout), readTimeout=5m
// (DefaultReadTimeout) and writeTimeout=30s (DefaultWriteTimeout). The
// pool gets Interrupt (KILL QUERY on its own connections) unless the DSN
// dials through a network of its own. Pool sizes and timeouts are poolset's defaults; edit
// the returned config to change them. The error, if any, never contains the
// password.
func PoolConfig(dsn string, readOnly bool) (poolset.PoolConfig, error) {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return poolset.PoolConfig{}, fmt.Errorf("mysql: invalid DSN %s: %w", poolset.Redact(dsn), err)
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
	threads := trackThreads(cfg)
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return poolset.PoolConfig{}, fmt.Errorf("mysql: invalid DSN %s: %w", poolset.Redact(dsn), err)
	}
	var c driver.Connector = conn
	if readOnly {
		c = &readOnlyConnector{Connector: conn}
	}
	pc := poolset.PoolConfig{
		Kind:        "mysql",
		Address:     poolset.Redact(dsn),
		Connector:   c,
		ReadOnly:    readOnly,
		IsConnError: IsConnError,
	}
	if threads != nil {
		pc.Interrupt = func(ctx context.Context) (int, error) { return threads.interrupt(ctx, conn) }
	}
	if readOnly {
		c := NewReplicaCheck(DefaultMaxLag)
		pc.Health, pc.Lag, pc.WaitPosition = c.Health, c.Lag, WaitPosition
	} else {
		pc.PositionQuery = PositionQuery
	}
	return pc, nil
}

// Timeouts PoolConfig puts in a DSN that sets none; each is overridden by
// the DSN's own timeout, readTimeout or writeTimeout parameter.
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

// Server error numbers poolset tells apart.
const (
	erDupEntry        = 1062
	erLockDeadlock    = 1213
	erLockWaitTimeout = 1205
	erReadOnlyTx      = 1792
	erServerShutdown  = 1053
	erConnCountError  = 1040
)

// IsConnError reports whether err means the connection or its server is
// gone (so another server may answer), as opposed to a statement error.
func IsConnError(err error) bool {
	if errors.Is(err, mysql.ErrInvalidConn) || errors.Is(err, driver.ErrBadConn) {
		return true
	}
	var me *mysql.MySQLError
	return errors.As(err, &me) && (me.Number == erServerShutdown || me.Number == erConnCountError)
}

// IsDuplicateKey reports whether err is a duplicate-key violation.
func IsDuplicateKey(err error) bool { return isNumber(err, erDupEntry) }

// IsRetryable reports whether a transaction that failed with err can be run
// again as a whole: a deadlock, a lock wait timeout, or a lost connection.
func IsRetryable(err error) bool {
	return isNumber(err, erLockDeadlock) || isNumber(err, erLockWaitTimeout) || IsConnError(err)
}

// IsReadOnly reports whether err is the server refusing a write in a
// read-only session.
func IsReadOnly(err error) bool { return isNumber(err, erReadOnlyTx) }

func isNumber(err error, n uint16) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me) && me.Number == n
}

// The counting helpers below poll the server, often many times a second
// under load. They use SHOW statements without arguments, so that they run
// over the text protocol and never as server-side prepared statements: a
// prepared SELECT from information_schema.processlist, run every 5 ms
// during a load, crashed MariaDB 10.11.19 here twice (signal 11 in
// ha_maria::drop_table, freeing the statement's temporary table).

// GlobalStatus returns the server's global status variable name, such as
// Threads_connected or Aborted_clients. name is letters, digits and
// underscores.
func GlobalStatus(ctx context.Context, db *sql.DB, name string) (int64, error) {
	for _, r := range name {
		if !(r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return 0, fmt.Errorf("mysql: global status %q: not a status variable name", name)
		}
	}
	v, err := globalStatus(ctx, db, name)
	if err != nil {
		return 0, fmt.Errorf("mysql: global status %s: %w", name, err)
	}
	return v, nil
}

func globalStatus(ctx context.Context, db *sql.DB, name string) (int64, error) {
	// No argument, so no prepared statement. In the LIKE pattern "_"
	// matches any character: the row whose name is name is picked below.
	rows, err := db.QueryContext(ctx, "SHOW GLOBAL STATUS LIKE '"+name+"'")
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	for rows.Next() {
		var got, v string
		if err := rows.Scan(&got, &v); err != nil {
			return 0, err
		}
		if strings.EqualFold(got, name) {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return 0, fmt.Errorf("value %q is not an integer", v)
			}
			return n, rows.Err()
		}
	}
	if err := rows.Err(); err != nil {
		return 0, err
	}
	return 0, errors.New("no such status variable")
}

// ConnectionsTo returns how many client connections the server has open with
// database dbName as their current database, from SHOW PROCESSLIST, not
// counting the connection it asks on. Opening each pool of a process on its
// own database (or counting from a connection on another) tells that
// process's connections apart from everyone else's.
func ConnectionsTo(ctx context.Context, db *sql.DB, dbName string) (int, error) {
	n, err := connectionsTo(ctx, db, dbName)
	if err != nil {
		return 0, fmt.Errorf("mysql: count connections to %s: %w", dbName, err)
	}
	return n, nil
}

func connectionsTo(ctx context.Context, db *sql.DB, dbName string) (int, error) {
	c, err := db.Conn(ctx)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	self, ps, err := processesFrom(ctx, c)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, p := range ps {
		if p.ID != self && p.DB == dbName && p.Command != "Daemon" {
			n++
		}
	}
	return n, nil
}

// processesFrom returns c's own connection id and the server's process
// list, as Processes reads it.
func processesFrom(ctx context.Context, c *sql.Conn) (self string, ps []Process, err error) {
	if err := c.QueryRowContext(ctx, "SELECT CONNECTION_ID()").Scan(&self); err != nil {
		return "", nil, err
	}
	ps, err = Processes(ctx, c)
	return self, ps, err
}

// Process is one row of SHOW FULL PROCESSLIST: a connection or a server
// thread. Empty strings stand for NULL.
type Process struct {
	ID, User, Host, DB, Command, State, Info string
}

// Processes returns the server's SHOW FULL PROCESSLIST, read over the text
// protocol (see GlobalStatus), from q: a *sql.DB, *sql.Conn or *sql.Tx.
func Processes(ctx context.Context, q interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}) ([]Process, error) {
	rows, err := q.QueryContext(ctx, "SHOW FULL PROCESSLIST")
	if err != nil {
		return nil, fmt.Errorf("mysql: processlist: %w", err)
	}
	all, err := rowMaps(rows)
	if err != nil {
		return nil, fmt.Errorf("mysql: processlist: %w", err)
	}
	ps := make([]Process, len(all))
	for k, row := range all {
		p := &ps[k]
		for c, v := range row {
			switch strings.ToLower(c) {
			case "id":
				p.ID = v
			case "user":
				p.User = v
			case "host":
				p.Host = v
			case "db":
				p.DB = v
			case "command":
				p.Command = v
			case "state":
				p.State = v
			case "info":
				p.Info = v
			}
		}
	}
	return ps, nil
}

// rowMaps reads every row of rows, as text, into a map from column name to
// value; a NULL leaves its column out. It closes rows.
func rowMaps(rows *sql.Rows) ([]map[string]string, error) {
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	vals := make([]sql.NullString, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	var all []map[string]string
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		row := make(map[string]string, len(cols))
		for i, c := range cols {
			if vals[i].Valid {
				row[c] = vals[i].String
			}
		}
		all = append(all, row)
	}
	return all, rows.Err()
}

// CreateDatabase creates database name on the server at dsn if it does not
// exist. dsn's own database is not used. Connecting is bounded by
// DefaultDialTimeout (or ctx, if sooner), handshake included.
func CreateDatabase(ctx context.Context, dsn, name string) error {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return fmt.Errorf("mysql: invalid DSN %s: %w", poolset.Redact(dsn), err)
	}
	cfg.DBName = ""
	if !paramsOf(dsn)["timeout"] {
		cfg.Timeout = DefaultDialTimeout
	}
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
