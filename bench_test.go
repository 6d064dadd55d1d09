package poolset_test

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/poolset/poolset"
	"github.com/poolset/poolset/mysql"
	"github.com/poolset/poolset/poolsettest"
	"github.com/poolset/poolset/postgres"
	"github.com/poolset/poolset/sqlite"
)

// Shape of BenchmarkPointRead (issue 8, point 4).
const (
	benchRows    = 1000 // rows in the users table, seeded once per backend
	benchClients = 16   // goroutines running queries at once
	benchMaxOpen = 10   // connections in every pool measured
)

// Point-read queries: by primary key, one placeholder.
const (
	pointRead   = "SELECT name FROM users WHERE id = ?"
	pointReadPG = "SELECT name FROM users WHERE id = $1"
)

// queryRower is what each path of BenchmarkPointRead queries through:
// *sql.DB, *poolset.Handle, *poolset.Reader and pgxRower. The benchmark only calls
// QueryRowContext(...).Scan(...), which compiles whether the row returned
// is a *poolset.Row, a *sql.Row or a pgx.Row.
type queryRower[R interface{ Scan(...any) error }] interface {
	QueryRowContext(ctx context.Context, query string, args ...any) R
}

// BenchmarkPointRead measures point reads by primary key on a bare
// *sql.DB against the same reads through a Handle (primary) and its Read
// view (read pool), with 16 goroutines on pools of 10 connections.
//
// Paths, per backend:
//   - bare: a *sql.DB opened on the primary pool's connector, MaxOpen 10;
//     the baseline for handle.
//   - handle: set.Handle("users").QueryRowContext, on the primary.
//   - bare-read: a *sql.DB opened on the read pool's connector, MaxOpen 10;
//     the baseline for read.
//   - read: set.Handle("users").Read().QueryRowContext, on the read pool.
//
// On PostgreSQL (poolsettest.PostgresDatabase; skipped when no server
// answers) the paths compare the Handle with pgx's own pool, on the
// primary only:
//   - handle: set.Handle("users").QueryRowContext, the set's primary from
//     postgres.Primary (pgx/v5/stdlib), MaxOpen 10.
//   - sqldb: a *sql.DB opened on the same connector, MaxOpen 10.
//   - pgxpool: a *pgxpool.Pool on the same DSN, MaxConns 10,
//     QueryRow(...).Scan; pgx's native interface, no database/sql.
//
// On SQLite the set's primary is given MaxOpen 10 instead of the one
// connection sqlite.PoolConfigs gives it (reads under WAL never wait for the
// writer), so that handle and bare both run on ten connections and the
// benchmark measures the Handle, not one connection's queue. On MariaDB the
// read pool's health check is turned off, so that the pool lends all ten
// connections (with one it lends nine) and nothing else runs on it.
//
// ns/op is wall time per query over all goroutines: on a shared machine
// it moves with the other load, by 10-20% on MariaDB, whose server shares
// the cores. cpu-ns/op, the benchmark process's own CPU time per query,
// shows what the Handle adds on the client with less noise.
//
//	go test -run '^$' -bench BenchmarkPointRead -benchtime 2s -count 6 .
//
// See docs/BENCHMARKS.md for figures and how to compare them.
func BenchmarkPointRead(b *testing.B) {
	b.Run("backend=sqlite", func(b *testing.B) {
		primary, read, err := sqlite.PoolConfigs(filepath.Join(b.TempDir(), "bench.db"), benchMaxOpen)
		if err != nil {
			b.Fatal(err)
		}
		primary.MaxOpen = benchMaxOpen
		benchPointRead(b, primary, read, "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
	})
	b.Run("backend=mariadb", func(b *testing.B) {
		dsn := poolsettest.MySQLDatabase(b, "poolset_bench_point_read")
		primary, err := mysql.Primary(dsn)
		if err != nil {
			b.Fatal(err)
		}
		read, err := mysql.Replica(dsn, 0)
		if err != nil {
			b.Fatal(err)
		}
		primary.MaxOpen, read.MaxOpen = benchMaxOpen, benchMaxOpen
		read.Health = nil
		benchPointRead(b, primary, read, "CREATE TABLE users (id INT PRIMARY KEY, name VARCHAR(64) NOT NULL)")
	})
	b.Run("backend=postgres", benchPointReadPostgres)
}

// benchPointRead opens a set on primary and read, creates and seeds the
// users table with create, and runs the four paths on it.
func benchPointRead(b *testing.B, primary, read poolset.PoolConfig, create string) {
	set := openSeeded(b, poolset.Config{Primary: primary, Reads: []poolset.PoolConfig{read}}, create)
	users := set.Handle("users")
	b.Run("path=bare", func(b *testing.B) { runPointReads(b, bareDB(b, primary), pointRead) })
	b.Run("path=handle", func(b *testing.B) { runPointReads(b, users, pointRead) })
	b.Run("path=bare-read", func(b *testing.B) { runPointReads(b, bareDB(b, read), pointRead) })
	b.Run("path=read", func(b *testing.B) { runPointReads(b, users.Read(), pointRead) })
}

// benchPointReadPostgres runs the PostgreSQL paths: the Handle, a bare
// *sql.DB on the same connector, and a bare pgxpool.Pool.
func benchPointReadPostgres(b *testing.B) {
	dsn := poolsettest.PostgresDatabase(b, "poolset_bench_point_read")
	primary, err := postgres.Primary(dsn)
	if err != nil {
		b.Fatal(err)
	}
	primary.MaxOpen = benchMaxOpen
	set := openSeeded(b, poolset.Config{Primary: primary}, "CREATE TABLE users (id INT PRIMARY KEY, name TEXT NOT NULL)")
	b.Run("path=handle", func(b *testing.B) { runPointReads(b, set.Handle("users"), pointReadPG) })
	b.Run("path=sqldb", func(b *testing.B) { runPointReads(b, bareDB(b, primary), pointReadPG) })
	b.Run("path=pgxpool", func(b *testing.B) { runPointReads(b, barePgxpool(b, dsn, nil), pointReadPG) })
}

// openSeeded opens a set on cfg, creates the users table with create on
// its primary, seeds it with benchRows rows, and closes the set when b
// ends.
func openSeeded(b *testing.B, cfg poolset.Config, create string) *poolset.Set {
	ctx := context.Background()
	set, err := poolset.Open(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { set.Close(ctx) })
	db := set.Primary().DB()
	if _, err := db.ExecContext(ctx, create); err != nil {
		b.Fatal(err)
	}
	values := make([]string, benchRows)
	for i := range values {
		values[i] = fmt.Sprintf("(%d, 'user-%d')", i+1, i+1)
	}
	if _, err := db.ExecContext(ctx, "INSERT INTO users (id, name) VALUES "+strings.Join(values, ", ")); err != nil {
		b.Fatal(err)
	}
	return set
}

// barePgxpool opens a pgxpool.Pool on dsn with benchMaxOpen connections,
// the application_name postgres.Primary gives its sessions, and tracer
// (may be nil) as its ConnConfig.Tracer; it closes the pool when b ends.
func barePgxpool(b *testing.B, dsn string, tracer pgx.QueryTracer) pgxRower {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		b.Fatal(err)
	}
	cfg.MaxConns = benchMaxOpen
	cfg.ConnConfig.RuntimeParams["application_name"] = postgres.DefaultApplicationName
	cfg.ConnConfig.Tracer = tracer
	p, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(p.Close)
	return pgxRower{p}
}

// pgxRower gives a pgxpool.Pool the method runPointReads calls.
type pgxRower struct{ p *pgxpool.Pool }

func (r pgxRower) QueryRowContext(ctx context.Context, query string, args ...any) pgx.Row {
	return r.p.QueryRow(ctx, query, args...)
}

// bareDB opens a *sql.DB on pc's connector, sized as the set sizes pc's
// pool, and closes it when b ends.
func bareDB(b *testing.B, pc poolset.PoolConfig) *sql.DB {
	db := sql.OpenDB(pc.Connector)
	db.SetMaxOpenConns(benchMaxOpen)
	db.SetMaxIdleConns(benchMaxOpen)
	b.Cleanup(func() { db.Close() })
	return db
}

// runPointReads runs b.N point reads (query, one id) on q from benchClients goroutines.
// Besides ns/op and allocs/op it reports cpu-ns/op, the CPU time the
// benchmark process (not the database server) used per query, where the
// platform tells it.
func runPointReads[R interface{ Scan(...any) error }](b *testing.B, q queryRower[R], query string) {
	ctx := context.Background()
	var name string // warm the pool, and check the query, before timing
	if err := q.QueryRowContext(ctx, query, 1).Scan(&name); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetParallelism((benchClients + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
	b.ResetTimer()
	cpu0, cpuOK := processCPU()
	b.RunParallel(func(pb *testing.PB) {
		var name string
		for pb.Next() {
			id := rand.IntN(benchRows) + 1
			if err := q.QueryRowContext(ctx, query, id).Scan(&name); err != nil {
				b.Error(err)
				return
			}
		}
	})
	if cpu1, ok := processCPU(); cpuOK && ok {
		b.ReportMetric(float64(cpu1-cpu0)/float64(b.N), "cpu-ns/op")
	}
}
