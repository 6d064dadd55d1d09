package shop

import (
	"strconv"
	"strings"
)

// The dialects Dialect.Name selects.
const (
	MySQL    = "mysql"
	Postgres = "postgres"
	SQLite   = "sqlite"
)

// bind returns q, written with ? placeholders, in the dialect's form:
// $1, $2, ... on PostgreSQL, unchanged elsewhere. The shop's statements
// have no ? inside a string literal.
func (d Dialect) bind(q string) string {
	if d.Name != Postgres {
		return q
	}
	var b strings.Builder
	b.Grow(len(q) + strings.Count(q, "?")*3)
	n := 0
	for i := 0; i < len(q); i++ {
		if q[i] != '?' {
			b.WriteByte(q[i])
			continue
		}
		n++
		b.WriteByte('$')
		b.WriteString(strconv.Itoa(n))
	}
	return b.String()
}

// products names the products table for statements that pick rows by a
// list of ids. On MySQL it forces the primary key: past about 200 ids
// MariaDB chose a full index scan that locked every product row and
// deadlocked concurrent groups of orders.
func (d Dialect) products() string {
	if d.Name == MySQL {
		return "products FORCE INDEX (PRIMARY)"
	}
	return "products"
}

// forUpdate is what locks the rows a SELECT reads until the transaction
// ends. SQLite has no row locks: its one writer holds the database.
func (d Dialect) forUpdate() string {
	if d.Name == SQLite {
		return ""
	}
	return " FOR UPDATE"
}

// insertIgnore returns the head and the tail of an INSERT that skips the
// rows whose key exists: INSERT IGNORE on MySQL, INSERT OR IGNORE on
// SQLite, ON CONFLICT DO NOTHING on PostgreSQL.
func (d Dialect) insertIgnore() (head, tail string) {
	switch d.Name {
	case MySQL:
		return "INSERT IGNORE INTO ", ""
	case Postgres:
		return "INSERT INTO ", " ON CONFLICT DO NOTHING"
	default:
		return "INSERT OR IGNORE INTO ", ""
	}
}

// bigint returns placeholder p typed as a 64-bit integer where the server
// cannot infer its type (PostgreSQL takes a CASE's THEN parameter for
// text).
func (d Dialect) bigint(p string) string {
	if d.Name == Postgres {
		return p + "::bigint"
	}
	return p
}
