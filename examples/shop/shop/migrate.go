package shop

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"

	"github.com/pressly/goose/v3"
)

//go:embed migrations/mysql/*.sql migrations/postgres/*.sql migrations/sqlite/*.sql
var migrations embed.FS

// Migrate brings the schema on db up to date with goose, using the
// migrations embedded for the dialect, and returns how many it applied. It
// is safe to run again: applied migrations are skipped.
func Migrate(ctx context.Context, db *sql.DB, d Dialect) (int, error) {
	dialect, dir := goose.DialectSQLite3, "migrations/sqlite"
	switch d.Name {
	case MySQL:
		dialect, dir = goose.DialectMySQL, "migrations/mysql"
	case Postgres:
		dialect, dir = goose.DialectPostgres, "migrations/postgres"
	}
	fsys, err := fs.Sub(migrations, dir)
	if err != nil {
		return 0, fmt.Errorf("shop: migrations: %w", err)
	}
	p, err := goose.NewProvider(dialect, db, fsys)
	if err != nil {
		return 0, fmt.Errorf("shop: migrations: %w", err)
	}
	res, err := p.Up(ctx)
	if err != nil {
		return len(res), fmt.Errorf("shop: migrate: %w", err)
	}
	return len(res), nil
}
