package mysql

import (
	"database/sql/driver"
	"errors"

	"github.com/go-sql-driver/mysql"
)

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
