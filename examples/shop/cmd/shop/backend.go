package main

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	gomysql "github.com/go-sql-driver/mysql"

	"github.com/poolset/poolset"
	"github.com/poolset/poolset/examples/shop/shop"
	"github.com/poolset/poolset/mysql"
	"github.com/poolset/poolset/postgres"
	"github.com/poolset/poolset/sqlite"
)

// applicationName is the PostgreSQL application_name of the service's
// sessions when the DSN sets none, so that pg_stat_activity tells them
// apart.
const applicationName = "shop"

// sqlBackend is the configured SQL server: MySQL (--mysql), PostgreSQL
// (--postgres), or the embedded SQLite (neither). Everything that differs
// between them in the command is here: pool configs, the shop's dialect,
// creating the database, counting the server's connections.
type sqlBackend struct {
	name string // shop.MySQL, shop.Postgres or shop.SQLite
	flag string // the setting errors name: --mysql, --postgres or --data
	dsn  string // the primary's DSN; empty for SQLite
	data string // --data, for SQLite
}

// backendFor returns the backend cfg selects. parse has checked that at
// most one of --mysql and --postgres is set.
func backendFor(cfg config) sqlBackend {
	switch {
	case cfg.MySQL != "":
		return sqlBackend{name: shop.MySQL, flag: "--mysql", dsn: cfg.MySQL}
	case cfg.Postgres != "":
		return sqlBackend{name: shop.Postgres, flag: "--postgres", dsn: withApplicationName(cfg.Postgres)}
	}
	return sqlBackend{name: shop.SQLite, flag: "--data", data: cfg.Data}
}

// withApplicationName returns the PostgreSQL dsn with application_name set
// to applicationName, unless dsn sets one: a URL gets a query parameter,
// the key=value form one more pair.
func withApplicationName(dsn string) string {
	if strings.Contains(dsn, "application_name=") {
		return dsn
	}
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		sep := "?"
		if strings.Contains(dsn, "?") {
			sep = "&"
		}
		return dsn + sep + "application_name=" + applicationName
	}
	return strings.TrimSpace(dsn) + " application_name=" + applicationName
}

// dialect returns the shop's dialect on the backend, with its error
// predicates.
func (b sqlBackend) dialect() shop.Dialect {
	switch b.name {
	case shop.MySQL:
		return shop.Dialect{Name: shop.MySQL, IsDuplicateKey: mysql.IsDuplicateKey, IsRetryable: mysql.IsRetryable}
	case shop.Postgres:
		return shop.Dialect{Name: shop.Postgres, IsDuplicateKey: postgres.IsDuplicateKey, IsRetryable: postgres.IsRetryable}
	}
	return shop.Dialect{Name: shop.SQLite, IsDuplicateKey: sqlite.IsDuplicateKey, IsRetryable: sqlite.IsRetryable}
}

// primary returns the primary pool's config, of at most maxOpen
// connections. Not for SQLite (see setConfig).
func (b sqlBackend) primary(maxOpen int) (poolset.PoolConfig, error) {
	var pc poolset.PoolConfig
	var err error
	if b.name == shop.Postgres {
		pc, err = postgres.Primary(b.dsn)
	} else {
		pc, err = mysql.Primary(b.dsn)
	}
	pc.MaxOpen = maxOpen
	return pc, err
}

// replica returns the config of a read pool on dsn: a MySQL replica or a
// PostgreSQL standby (read-only sessions).
func (b sqlBackend) replica(dsn string, maxLag time.Duration, maxOpen int) (poolset.PoolConfig, error) {
	var pc poolset.PoolConfig
	var err error
	if b.name == shop.Postgres {
		pc, err = postgres.Standby(withApplicationName(dsn), maxLag)
	} else {
		pc, err = mysql.Replica(dsn, maxLag)
	}
	pc.MaxOpen = maxOpen
	return pc, err
}

// setConfig returns the pool set's configuration for cfg: a MySQL or
// PostgreSQL primary and its read pools, or the embedded SQLite pair.
func setConfig(cfg config, log *slog.Logger) (poolset.Config, error) {
	pc := poolset.Config{LeakThreshold: cfg.LeakThreshold, Logger: log}
	b := backendFor(cfg)
	if b.name == shop.SQLite {
		primary, read, err := sqlite.PoolConfigs(filepath.Join(cfg.Data, "poolset.db"), 0)
		if err != nil {
			return pc, fmt.Errorf("--data: %w", err)
		}
		pc.Primary, pc.Reads = primary, []poolset.PoolConfig{read}
		return pc, nil
	}
	primary, err := b.primary(cfg.MaxOpen)
	if err != nil {
		return pc, usagef("%s: %v", b.flag, err)
	}
	pc.Primary = primary
	for i, dsn := range cfg.Replicas {
		rc, err := b.replica(dsn, cfg.MaxLag, cfg.MaxOpen)
		if err != nil {
			return pc, usagef("--replica: %v", err)
		}
		rc.Name = fmt.Sprintf("replica-%d", i+1)
		pc.Reads = append(pc.Reads, rc)
	}
	return pc, nil
}

// ensureDatabase creates the database the --mysql or --postgres DSN names
// unless it exists, for commands that migrate.
func ensureDatabase(ctx context.Context, cfg config) error {
	b := backendFor(cfg)
	if b.name == shop.SQLite {
		return nil
	}
	name, err := b.databaseName()
	if err != nil {
		return usagef("%s: %v", b.flag, err)
	}
	if name == "" {
		want := "user:pass@tcp(host:port)/db"
		if b.name == shop.Postgres {
			want = "postgres://user:pass@host:port/db or dbname=db"
		}
		return usagef("%s: the DSN names no database (want %s)", b.flag, want)
	}
	create := mysql.CreateDatabase
	if b.name == shop.Postgres {
		create = postgres.CreateDatabase
	}
	if err := create(ctx, b.dsn, name); err != nil {
		return fmt.Errorf("%s: %w", b.flag, err)
	}
	return nil
}

// databaseName returns the database the primary's DSN names.
func (b sqlBackend) databaseName() (string, error) {
	if b.name == shop.Postgres {
		return postgres.DatabaseName(b.dsn)
	}
	return mysql.DatabaseName(b.dsn)
}

// connCounter counts the server's connections to the backend's database,
// its own excepted: what the sharing benchmark samples.
type connCounter struct {
	db    *sql.DB
	count func(ctx context.Context) (int, error)
}

// Close closes the counter's connection.
func (c *connCounter) Close() error { return c.db.Close() }

// newConnCounter opens one connection to the server, outside any pool of
// the service. On MySQL it has no default database, so that it is not
// counted; on PostgreSQL it leaves its own session out by pid.
func (b sqlBackend) newConnCounter() (*connCounter, error) {
	dbName, err := b.databaseName()
	if err != nil {
		return nil, usagef("%s: %v", b.flag, err)
	}
	if b.name == shop.Postgres {
		pc, err := postgres.Primary(b.dsn)
		if err != nil {
			return nil, usagef("--postgres: %v", err)
		}
		db := sql.OpenDB(pc.Connector)
		db.SetMaxOpenConns(1)
		return &connCounter{db: db, count: func(ctx context.Context) (int, error) {
			var n int
			err := db.QueryRowContext(ctx, "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", dbName).Scan(&n)
			return n, err
		}}, nil
	}
	c, err := gomysql.ParseDSN(b.dsn)
	if err != nil {
		return nil, usagef("--mysql: invalid DSN %s: %v", poolset.Redact(b.dsn), err)
	}
	c.DBName = ""
	conn, err := gomysql.NewConnector(c)
	if err != nil {
		return nil, usagef("--mysql: %v", err)
	}
	db := sql.OpenDB(conn)
	db.SetMaxOpenConns(1)
	return &connCounter{db: db, count: func(ctx context.Context) (int, error) {
		return mysql.ConnectionsTo(ctx, db, dbName)
	}}, nil
}
