package poolsettest

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// PostgresDSN returns the URL of the machine's PostgreSQL server for tests,
// from POOLSET_TEST_POSTGRES_DSN or the default
// postgres://postgres@127.0.0.1:5432/test?sslmode=disable. It skips tb when
// nothing listens there. It holds the SharedServers lock shared until tb
// ends (see LockServer).
func PostgresDSN(tb testing.TB) string {
	tb.Helper()
	dsn := envOr("POOLSET_TEST_POSTGRES_DSN", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable")
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		tb.Fatalf("poolsettest: POOLSET_TEST_POSTGRES_DSN: %v", err)
	}
	ShareServer(tb, SharedServers)
	if cfg.Host != "" && cfg.Host[0] != '/' {
		reachable(tb, "PostgreSQL", "POOLSET_TEST_POSTGRES_DSN", net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port))))
	}
	return dsn
}

// PostgresDatabase creates a fresh database named name on the test
// PostgreSQL server (dropping any earlier one, and its sessions), drops it
// when tb ends, and returns a DSN for it (the URL form). Giving each test
// its own database lets it count its own sessions in pg_stat_activity.
func PostgresDatabase(tb testing.TB, name string) string {
	tb.Helper()
	dsn := PostgresDSN(tb)
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		tb.Fatalf("poolsettest: %v", err)
	}
	q := pgx.Identifier{name}.Sanitize()
	admin := func(stmt string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c := cfg.Copy()
		c.Database = "postgres"
		conn, err := pgx.ConnectConfig(ctx, c)
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, stmt)
		return err
	}
	if err := admin("DROP DATABASE IF EXISTS " + q + " WITH (FORCE)"); err != nil {
		tb.Fatalf("poolsettest: drop database %s: %v", name, err)
	}
	if err := admin("CREATE DATABASE " + q); err != nil {
		tb.Fatalf("poolsettest: create database %s: %v", name, err)
	}
	tb.Cleanup(func() { admin("DROP DATABASE IF EXISTS " + q + " WITH (FORCE)") })
	return (&pgURL{cfg: cfg, db: name}).String()
}

// pgURL formats a test DSN for another database of the same server.
type pgURL struct {
	cfg *pgx.ConnConfig
	db  string
}

func (u *pgURL) String() string {
	s := "postgres://" + u.cfg.User
	if u.cfg.Password != "" {
		s += ":" + u.cfg.Password
	}
	return s + "@" + net.JoinHostPort(u.cfg.Host, strconv.Itoa(int(u.cfg.Port))) + "/" + u.db + "?sslmode=disable"
}
