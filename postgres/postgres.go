// Package postgres builds poolset pools for PostgreSQL servers through pgx
// v5's database/sql driver (pgx/v5/stdlib), so that every Handle feature
// works as on MySQL: a primary (Primary) and read pools on streaming
// standbys (Standby), each standby's health and replication lag
// (StandbyCheck), WAL positions for reads under ReadYourWrites
// (WALPositions), and interrupting a pool's statements without cutting its
// connections (pg_cancel_backend; PoolConfig.Interrupt). It tells the
// driver's errors apart (IsConnError, IsRetryable, IsDuplicateKey,
// IsReadOnly, IsInterrupted) and creates a test or service database
// (CreateDatabase).
//
// It does not own the pools (package poolset opens, routes and closes
// them), a schema or migrations, or the servers and their replication
// (package poolsettest sets those up for tests).
package postgres

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/poolset/poolset"
)

// Defaults Primary and Standby put in a DSN that sets none.
const (
	// DefaultConnectTimeout bounds opening a connection (pgx's
	// connect_timeout). pgx has none by default, so a server that drops
	// SYNs would hold a start for minutes.
	DefaultConnectTimeout = 5 * time.Second
	// DefaultApplicationName is the application_name of the pools'
	// sessions, so that pg_stat_activity tells them apart.
	DefaultApplicationName = "poolset"
)

// Primary returns the poolset.PoolConfig of a primary: read-write sessions
// on the server at dsn, a URL (postgres://user:password@host:port/db?...)
// or libpq's key=value form (host=... user=... password=... dbname=...).
//
// Primary and Standby both set, unless dsn says otherwise,
// connect_timeout (DefaultConnectTimeout) and application_name
// (DefaultApplicationName). Both set Positions to WALPositions, so that
// reads under ReadYourWrites wait on a standby for the primary's WAL
// position after a write, and Interrupt to pg_cancel_backend of the pool's
// own backends (their PIDs, recorded as each connection opens), sent from
// a connection of its own, which ends their running statements with
// SQLSTATE 57014 (IsInterrupted) and leaves the connections usable. Pool
// sizes and timeouts are poolset's defaults; edit the returned config to
// change them. The error, if any, never contains the password.
func Primary(dsn string) (poolset.PoolConfig, error) {
	return newPoolConfig(dsn, false)
}

// Standby returns the poolset.PoolConfig of a read pool on the server at
// dsn (see Primary for the DSN). Every session is read-only
// (default_transaction_read_only=on, sent as the session starts), so that a
// write sent to the pool fails on the server with SQLSTATE 25006
// (IsReadOnly) instead of writing. Its Health is a
// NewStandbyCheck(maxLag), which takes the pool out of the rotation while
// the server does not answer, is not in recovery, does not stream WAL, or
// lags more than maxLag (see StandbyCheck); 0 means DefaultMaxLag, a
// negative maxLag is an error. A standby down when the set opens does not
// stop the open: its pool starts out of the rotation.
func Standby(dsn string, maxLag time.Duration) (poolset.PoolConfig, error) {
	if maxLag < 0 {
		return poolset.PoolConfig{}, fmt.Errorf("postgres: standby %s: max lag %s: must not be negative", poolset.Redact(dsn), maxLag)
	}
	pc, err := newPoolConfig(dsn, true)
	if err != nil {
		return pc, err
	}
	pc.Health = NewStandbyCheck(maxLag)
	return pc, nil
}

// DefaultMaxLag is the replication lag past which a standby's health check
// takes its pool out of the rotation, as for MySQL replicas.
const DefaultMaxLag = time.Second

// newPoolConfig returns the config Primary and Standby build.
func newPoolConfig(dsn string, readOnly bool) (poolset.PoolConfig, error) {
	cfg, err := connConfig(dsn)
	if err != nil {
		return poolset.PoolConfig{}, err
	}
	if readOnly {
		cfg.RuntimeParams["default_transaction_read_only"] = "on"
	}
	conns := trackBackends(cfg)
	return poolset.PoolConfig{
		Kind:        "postgres",
		Address:     address(cfg),
		Connector:   conns,
		ReadOnly:    readOnly,
		IsConnError: IsConnError,
		Positions:   WALPositions{},
		Interrupt:   conns.interrupt,
	}, nil
}

// connConfig parses dsn and applies the package's defaults where dsn sets
// none.
func connConfig(dsn string) (*pgx.ConnConfig, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		// pgx's parse errors quote the DSN with its password masked, but
		// keep ours to one redaction.
		return nil, fmt.Errorf("postgres: invalid DSN %s", poolset.Redact(dsn))
	}
	if !sets(dsn, "connect_timeout") {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	if !sets(dsn, "application_name") {
		cfg.RuntimeParams["application_name"] = DefaultApplicationName
	}
	return cfg, nil
}

// sets reports whether dsn sets the parameter key, in either form.
func sets(dsn, key string) bool {
	return strings.Contains(dsn, key+"=")
}

// address is how a pool on cfg is shown: user@host:port/db.
func address(cfg *pgx.ConnConfig) string {
	return fmt.Sprintf("%s@%s:%d/%s", cfg.User, cfg.Host, cfg.Port, cfg.Database)
}

// SQLSTATE codes the predicates test.
const (
	codeSerializationFailure = "40001"
	codeDeadlockDetected     = "40P01"
	codeUniqueViolation      = "23505"
	codeReadOnlyTransaction  = "25006"
	codeAdminShutdown        = "57P01"
	codeCrashShutdown        = "57P02"
	codeCannotConnectNow     = "57P03"
	codeDuplicateDatabase    = "42P04"
)

// code returns err's SQLSTATE, or "" when err is not a server error.
func code(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// IsConnError reports whether err means the connection is broken, not that
// the statement failed: a connection exception (SQLSTATE class 08), a
// server shutting down or starting (57P01, 57P02, 57P03), a failed connect,
// or driver.ErrBadConn.
func IsConnError(err error) bool {
	if err == nil {
		return false
	}
	c := code(err)
	if strings.HasPrefix(c, "08") || c == codeAdminShutdown || c == codeCrashShutdown || c == codeCannotConnectNow {
		return true
	}
	var ce *pgconn.ConnectError
	return errors.As(err, &ce) || errors.Is(err, driver.ErrBadConn)
}

// IsRetryable reports whether running the transaction again may succeed:
// a serialization failure (40001), a deadlock (40P01), or a lost
// connection (IsConnError).
func IsRetryable(err error) bool {
	switch code(err) {
	case codeSerializationFailure, codeDeadlockDetected:
		return true
	}
	return IsConnError(err)
}

// IsDuplicateKey reports whether err is a unique violation (23505).
func IsDuplicateKey(err error) bool { return code(err) == codeUniqueViolation }

// IsReadOnly reports whether err is a write refused by a read-only
// transaction (25006), as a Standby pool's sessions refuse every write.
func IsReadOnly(err error) bool { return code(err) == codeReadOnlyTransaction }

// DatabaseName returns the database dsn connects to.
func DatabaseName(dsn string) (string, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return "", fmt.Errorf("postgres: invalid DSN %s", poolset.Redact(dsn))
	}
	return cfg.Database, nil
}

// CreateDatabase creates database name on the server at dsn unless it
// exists, connecting to the server's postgres database (dsn's own may not
// exist yet). It gives up after DefaultConnectTimeout to connect and as
// long again to create. The error never contains the password.
func CreateDatabase(ctx context.Context, dsn, name string) error {
	cfg, err := connConfig(dsn)
	if err != nil {
		return err
	}
	cfg.Database = "postgres"
	ctx, cancel := context.WithTimeout(ctx, 2*DefaultConnectTimeout)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("postgres: create database %s on %s: %w", name, address(cfg), redactErr(err, dsn))
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	if err != nil && code(err) != codeDuplicateDatabase {
		return fmt.Errorf("postgres: create database %s on %s: %w", name, address(cfg), err)
	}
	return nil
}

// redactErr returns err, or, when its text holds dsn, an error with dsn
// redacted.
func redactErr(err error, dsn string) error {
	if strings.Contains(err.Error(), dsn) {
		return errors.New(strings.ReplaceAll(err.Error(), dsn, poolset.Redact(dsn)))
	}
	return err
}
