// Package sqlite builds poolset's embedded default through
// modernc.org/sqlite (pure Go, no cgo): one database file in WAL mode, a
// one-connection write pool as the primary and a read-only pool of several
// connections as the read pool: the same shape as a primary and a replica.
// It also tells SQLite's errors apart (IsDuplicateKey, IsRetryable,
// IsReadOnly). It does not own the pools (package poolset opens and closes
// them) or the schema. The read pool needs no health check (it is the same
// file) and has no Positions: reads under ReadYourWrites go to the primary.
package sqlite

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/poolset/poolset"
)

// DefaultReaders is the size of the read pool PoolConfigs returns.
const DefaultReaders = 4

// PoolConfigs returns the primary and read pool configs for the database
// file path, creating its directory. The primary has exactly one connection
// (SQLite allows one writer at a time; more would only wait on its lock),
// begins transactions IMMEDIATE so that they never fail to upgrade a read
// lock, and waits up to 10 s for the lock. The read pool has readers
// connections (default 4 when readers <= 0), each query_only, so a write
// sent there fails. Both use WAL, so reads never wait for the writer.
func PoolConfigs(path string, readers int) (primary, read poolset.PoolConfig, err error) {
	if readers <= 0 {
		readers = DefaultReaders
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return primary, read, fmt.Errorf("sqlite: create data directory: %w", err)
	}
	common := "_pragma=busy_timeout(10000)&_pragma=foreign_keys(1)&_pragma=synchronous(NORMAL)"
	u := "file:" + (&url.URL{Path: path}).EscapedPath()
	primary = poolset.PoolConfig{
		Kind:      "sqlite",
		Address:   path,
		Connector: connector{dsn: u + "?_pragma=journal_mode(WAL)&" + common + "&_txlock=immediate"},
		MaxOpen:   1,
	}
	read = poolset.PoolConfig{
		Kind:      "sqlite",
		Address:   path,
		Connector: connector{dsn: u + "?" + common + "&_pragma=query_only(1)"},
		ReadOnly:  true,
		MaxOpen:   readers,
	}
	return primary, read, nil
}

// connector opens modernc.org/sqlite connections to one DSN.
type connector struct{ dsn string }

func (c connector) Connect(context.Context) (driver.Conn, error) { return c.Driver().Open(c.dsn) }
func (c connector) Driver() driver.Driver                        { return &sqlite.Driver{} }

// IsDuplicateKey reports whether err is a primary-key or unique violation.
func IsDuplicateKey(err error) bool {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	return se.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY || se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE
}

// IsRetryable reports whether a transaction that failed with err can be run
// again: the database was busy or locked.
func IsRetryable(err error) bool {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	return se.Code()&0xff == sqlite3.SQLITE_BUSY || se.Code()&0xff == sqlite3.SQLITE_LOCKED
}

// IsReadOnly reports whether err is SQLite refusing a write on a read-only
// (query_only) connection.
func IsReadOnly(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_READONLY
}
