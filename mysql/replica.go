package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// DefaultMaxLag is the replication lag past which ReplicaHealth takes a
// replica out of the rotation.
const DefaultMaxLag = time.Second

// ErrNotCaughtUp is wrapped by ReplicaHealth's error for a replica that is
// not replicating or lags too far.
var ErrNotCaughtUp = errors.New("mysql: replica not caught up")

// ReplicaHealth returns a poolset health check for a replica: it fails
// when the server does not answer, when its replication IO or SQL thread
// is not running, or when Seconds_Behind_Master (whole seconds) is unknown
// or above maxLag (default 1 s when maxLag <= 0). A server that is not a
// replica at all (SHOW SLAVE STATUS has no row) passes: it is a read-only
// pool on a standalone server.
func ReplicaHealth(maxLag time.Duration) func(ctx context.Context, conn *sql.Conn) error {
	if maxLag <= 0 {
		maxLag = DefaultMaxLag
	}
	return func(ctx context.Context, conn *sql.Conn) error {
		st, err := slaveStatus(ctx, conn)
		if err != nil || st == nil {
			return err
		}
		if io := st["Slave_IO_Running"]; io != "Yes" {
			return fmt.Errorf("%w: IO thread %s (%s)", ErrNotCaughtUp, io, st["Last_IO_Error"])
		}
		if s := st["Slave_SQL_Running"]; s != "Yes" {
			return fmt.Errorf("%w: SQL thread %s (%s)", ErrNotCaughtUp, s, st["Last_SQL_Error"])
		}
		lag, err := strconv.Atoi(st["Seconds_Behind_Master"])
		if err != nil {
			return fmt.Errorf("%w: lag unknown", ErrNotCaughtUp)
		}
		if time.Duration(lag)*time.Second > maxLag {
			return fmt.Errorf("%w: %ds behind, over the %s limit", ErrNotCaughtUp, lag, maxLag)
		}
		return nil
	}
}

// slaveStatus returns SHOW SLAVE STATUS's first row by column, or nil
// when the server is not a replica.
func slaveStatus(ctx context.Context, conn *sql.Conn) (map[string]string, error) {
	rows, err := conn.QueryContext(ctx, "SHOW SLAVE STATUS")
	if err != nil {
		return nil, fmt.Errorf("mysql: replica status: %w", err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, fmt.Errorf("mysql: replica status: %w", err)
	}
	if !rows.Next() {
		return nil, rows.Err()
	}
	vals := make([]sql.NullString, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	if err := rows.Scan(ptrs...); err != nil {
		return nil, fmt.Errorf("mysql: replica status: %w", err)
	}
	st := make(map[string]string, len(cols))
	for i, c := range cols {
		if vals[i].Valid {
			st[c] = vals[i].String
		}
	}
	return st, rows.Err()
}

// Position returns the GTID of the last transaction committed on conn's
// session (MariaDB's @@last_gtid), for poolset's read-your-writes. It
// fails on servers without it (MySQL), and reads then go to the primary.
func Position(ctx context.Context, conn *sql.Conn) (string, error) {
	var pos string
	if err := conn.QueryRowContext(ctx, "SELECT @@last_gtid").Scan(&pos); err != nil {
		return "", fmt.Errorf("mysql: last gtid: %w", err)
	}
	return pos, nil
}

// WaitPosition waits up to timeout for conn's server to have applied the
// GTID position pos (MASTER_GTID_WAIT) and reports whether it did.
func WaitPosition(ctx context.Context, conn *sql.Conn, pos string, timeout time.Duration) (bool, error) {
	if pos == "" {
		return true, nil
	}
	var res int
	if err := conn.QueryRowContext(ctx, "SELECT MASTER_GTID_WAIT(?, ?)", pos, timeout.Seconds()).Scan(&res); err != nil {
		return false, fmt.Errorf("mysql: wait for gtid %s: %w", pos, err)
	}
	return res == 0, nil
}
