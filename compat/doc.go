// Package compat holds tests that run code written with the tools users
// already have (sqlc-generated code, GORM, sqlx) on a poolset Set against
// the real MariaDB, and check the set's per-repository figures.
//
// It is a module of its own (github.com/poolset/poolset/compat) so that the
// library's go.mod does not list those tools. The go.work at the
// repository root lists both modules: from the root, run
//
//	go test ./... ./compat/...
//
// The sqlc code in sqlc/sqlcdb is generated: after editing sqlc/schema.sql
// or sqlc/query.sql, run `sqlc generate` (sqlc v1.31.1) in compat/sqlc and
// commit its output.
package compat
