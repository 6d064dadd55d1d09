// Package poolsettest helps tests find, and start, the real servers that
// poolset talks to: the machine's shared services (services.go), MariaDB
// instances and replication pairs of a test's own (instance.go, pair.go),
// and locks that keep tests that count a server's connections apart
// (lock.go). It is for tests only: no production package imports it, and it
// does not open pools (packages poolset and mysql do).
//
// Tests find the machine's services through environment variables and fall
// back to the default local address; when a service is absent they skip with
// a reason, or fail when POOLSET_REQUIRE_SERVICES=1 (as CI sets it).
//
//	POOLSET_TEST_MYSQL_DSN  default root@tcp(127.0.0.1:3306)/test
//	POOLSET_TEST_REDIS_URL  default redis://127.0.0.1:6379/0
//	POOLSET_TEST_NATS_URL   default nats://127.0.0.1:4222
//	POOLSET_TEST_AMQP_URL   default amqp://guest:guest@127.0.0.1:5672/
package poolsettest

import (
	"context"
	"database/sql"
	"net"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// RequireServices reports whether a missing service fails a test instead of
// skipping it: true when POOLSET_REQUIRE_SERVICES=1.
func RequireServices() bool { return os.Getenv("POOLSET_REQUIRE_SERVICES") == "1" }

// Skip skips tb with the formatted reason, or fails it when RequireServices
// is true.
func Skip(tb testing.TB, format string, args ...any) {
	tb.Helper()
	if RequireServices() {
		tb.Fatalf("required service missing (POOLSET_REQUIRE_SERVICES=1): "+format, args...)
	}
	tb.Skipf(format, args...)
}

// MySQLDSN returns the DSN of the machine's MariaDB/MySQL server for tests,
// in go-sql-driver/mysql form, from POOLSET_TEST_MYSQL_DSN or the default
// root@tcp(127.0.0.1:3306)/test. It skips tb when nothing listens there.
// It holds the SharedServers lock shared until tb ends (see LockServer).
func MySQLDSN(tb testing.TB) string {
	tb.Helper()
	dsn := envOr("POOLSET_TEST_MYSQL_DSN", "root@tcp(127.0.0.1:3306)/test")
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		tb.Fatalf("poolsettest: POOLSET_TEST_MYSQL_DSN: %v", err)
	}
	// Shared before the first dial: a dial is a connection too.
	ShareServer(tb, SharedServers)
	if cfg.Net == "tcp" {
		reachable(tb, "MariaDB", "POOLSET_TEST_MYSQL_DSN", cfg.Addr)
	}
	return dsn
}

// RedisURL returns the URL of the machine's Redis server for tests, from
// POOLSET_TEST_REDIS_URL or redis://127.0.0.1:6379/0. It skips tb when
// nothing listens there. It holds the SharedServers lock shared until tb
// ends (see LockServer).
func RedisURL(tb testing.TB) string {
	tb.Helper()
	ShareServer(tb, SharedServers)
	return urlService(tb, "Redis", "POOLSET_TEST_REDIS_URL", "redis://127.0.0.1:6379/0", "6379")
}

// NATSURL returns the URL of the machine's NATS server (with JetStream) for
// tests, from POOLSET_TEST_NATS_URL or nats://127.0.0.1:4222. It skips tb
// when nothing listens there.
func NATSURL(tb testing.TB) string {
	tb.Helper()
	return urlService(tb, "NATS", "POOLSET_TEST_NATS_URL", "nats://127.0.0.1:4222", "4222")
}

// AMQPURL returns the URL of the machine's RabbitMQ server for tests, from
// POOLSET_TEST_AMQP_URL or amqp://guest:guest@127.0.0.1:5672/. It skips tb
// when nothing listens there.
func AMQPURL(tb testing.TB) string {
	tb.Helper()
	return urlService(tb, "RabbitMQ", "POOLSET_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/", "5672")
}

func urlService(tb testing.TB, what, env, def, port string) string {
	tb.Helper()
	raw := envOr(env, def)
	u, err := url.Parse(raw)
	if err != nil {
		tb.Fatalf("poolsettest: %s: %v", env, err)
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), port)
	}
	reachable(tb, what, env, host)
	return raw
}

func reachable(tb testing.TB, what, env, addr string) {
	tb.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		Skip(tb, "%s not reachable at %s (set %s): %v", what, addr, env, err)
		return
	}
	c.Close()
}

func envOr(key, def string) string {
	if v := strings.TrimSpace(os.Getenv(key)); v != "" {
		return v
	}
	return def
}

// MySQLDatabase creates a fresh database named name on the test MariaDB
// (dropping any earlier one), drops it when tb ends, and returns a DSN for
// it. Giving each test its own database lets it count its own connections
// in information_schema.processlist.
func MySQLDatabase(tb testing.TB, name string) string {
	tb.Helper()
	dsn := MySQLDSN(tb)
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		tb.Fatalf("poolsettest: %v", err)
	}
	cfg.DBName = ""
	admin, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		tb.Fatalf("poolsettest: %v", err)
	}
	defer admin.Close()
	ctx := context.Background()
	q := "`" + strings.ReplaceAll(name, "`", "``") + "`"
	if _, err := admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+q); err != nil {
		tb.Fatalf("poolsettest: drop database %s: %v", name, err)
	}
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+q); err != nil {
		tb.Fatalf("poolsettest: create database %s: %v", name, err)
	}
	tb.Cleanup(func() {
		db, err := sql.Open("mysql", cfg.FormatDSN())
		if err == nil {
			db.ExecContext(context.Background(), "DROP DATABASE IF EXISTS "+q)
			db.Close()
		}
	})
	cfg.DBName = name
	return cfg.FormatDSN()
}
