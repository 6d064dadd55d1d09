package poolset_test

import (
	"context"
	"database/sql"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/poolset/poolset"
	"github.com/poolset/poolset/mysql"
	"github.com/poolset/poolset/poolsettest"
	"github.com/poolset/poolset/release"
	"github.com/poolset/poolset/sqlite"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newLogger() (*slog.Logger, *poolsettest.Buffer) {
	var lb poolsettest.Buffer
	return slog.New(slog.NewTextHandler(&lb, nil)), &lb
}

// openSQLite opens a set on a fresh SQLite database with a table t.
func openSQLite(t *testing.T, cfg poolset.Config) *poolset.Set {
	t.Helper()
	primary, read, err := sqlite.PoolConfigs(filepath.Join(t.TempDir(), "test.db"), 2)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Primary.AcquireTimeout != 0 {
		primary.AcquireTimeout = cfg.Primary.AcquireTimeout
	}
	cfg.Primary, cfg.Reads = primary, []poolset.PoolConfig{read}
	return mustOpen(t, cfg)
}

// openMariaDB opens a set on a fresh database of the test MariaDB, with a
// read-only pool on the same server, and a table t.
func openMariaDB(t *testing.T, name string, cfg poolset.Config) (*poolset.Set, string) {
	t.Helper()
	primary, read, dsn := mariaDBConfigs(t, name)
	cfg.Primary, cfg.Reads = primary, append([]poolset.PoolConfig{read}, cfg.Reads...)
	return mustOpen(t, cfg), dsn
}

// mariaDBConfigs creates database name on the test MariaDB and returns a
// primary and a read pool config for it, and its DSN.
func mariaDBConfigs(t *testing.T, name string) (primary, read poolset.PoolConfig, dsn string) {
	t.Helper()
	dsn = poolsettest.MySQLDatabase(t, name)
	primary, err := mysql.Primary(dsn)
	if err != nil {
		t.Fatal(err)
	}
	read, err = mysql.Replica(dsn, 0)
	if err != nil {
		t.Fatal(err)
	}
	return primary, read, dsn
}

func mustOpen(t *testing.T, cfg poolset.Config) *poolset.Set {
	t.Helper()
	ctx := context.Background()
	s, err := poolset.Open(ctx, cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close(ctx) })
	if _, err := s.Primary().DB().ExecContext(ctx, "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)"); err != nil {
		t.Fatal(err)
	}
	return s
}

func repoStats(t *testing.T, st poolset.PoolStats, repo string) poolset.RepoStats {
	t.Helper()
	for _, r := range st.Repos {
		if r.Repo == repo {
			return r
		}
	}
	t.Fatalf("pool %s: no stats for repo %s in %+v", st.Name, repo, st.Repos)
	return poolset.RepoStats{}
}

func TestAttribution(t *testing.T) {
	ctx := context.Background()
	s := openSQLite(t, poolset.Config{})
	users, orders := s.Handle("users"), s.Handle("orders")
	if s.Handle("users") != users {
		t.Fatal("Handle(users) twice: got two handles; want the same one")
	}
	for i := range 3 {
		if _, err := orders.ExecContext(ctx, "INSERT INTO t (id, v) VALUES (?, ?)", i+1, "x"); err != nil {
			t.Fatal(err)
		}
	}
	tx, err := orders.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, "UPDATE t SET v = 'y' WHERE id = 1"); err != nil {
		t.Fatal(err)
	}
	if got := repoStats(t, s.Primary().Stats(), "orders").InUse; got != 1 {
		t.Errorf("orders in use during tx: got %d; want 1", got)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	var v string
	if err := users.Read().QueryRowContext(ctx, "SELECT v FROM t WHERE id = 1").Scan(&v); err != nil || v != "y" {
		t.Fatalf("read: got %q, %v; want y", v, err)
	}
	rows, err := users.Read().QueryContext(ctx, "SELECT id FROM t ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for rows.Next() {
		n++
	}
	if n != 3 {
		t.Errorf("rows: got %d; want 3", n)
	}

	o := repoStats(t, s.Primary().Stats(), "orders")
	if o.Queries != 4 || o.Txs != 1 || o.InUse != 0 || o.Acquires != 4 || o.Use != "writes" {
		t.Errorf("orders on primary: got queries %d tx %d in use %d acquires %d use %q; want 4 1 0 4 writes", o.Queries, o.Txs, o.InUse, o.Acquires, o.Use)
	}
	if o.LongestHold <= 0 {
		t.Errorf("orders longest hold: got %v; want > 0", o.LongestHold)
	}
	u := repoStats(t, s.Reads()[0].Stats(), "users")
	if u.Queries != 2 || u.InUse != 0 || u.Use != "reads" {
		t.Errorf("users on read pool: got queries %d in use %d use %q; want 2 0 reads", u.Queries, u.InUse, u.Use)
	}
	for _, r := range s.Primary().Stats().Repos {
		if r.Repo == "users" {
			t.Errorf("users on primary: got %+v; want no use (its reads go to the read pool)", r)
		}
	}
	tree := s.Tree()
	for _, want := range []string{"primary (sqlite)", "read-1 (sqlite, read-only)", "orders", "users", "reads", "(p99 "} {
		if !strings.Contains(tree, want) {
			t.Errorf("tree lacks %q:\n%s", want, tree)
		}
	}
}

func TestAcquireTimeoutNamesHolders(t *testing.T) {
	ctx := context.Background()
	s := openSQLite(t, poolset.Config{Primary: poolset.PoolConfig{AcquireTimeout: 100 * time.Millisecond}})
	orders, users := s.Handle("orders"), s.Handle("users")
	rows, err := orders.QueryContext(ctx, "SELECT 1")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	_, err = users.ExecContext(ctx, "INSERT INTO t (id, v) VALUES (1, 'x')")
	var te *poolset.AcquireTimeoutError
	if !errors.As(err, &te) || !errors.Is(err, poolset.ErrAcquireTimeout) {
		t.Fatalf("exec on a full pool: got %v; want an AcquireTimeoutError", err)
	}
	if te.Pool != "primary" || te.InUse != 1 || te.MaxOpen != 1 || te.Holders["orders"] != 1 {
		t.Errorf("got %+v; want pool primary, 1/1 in use, orders holding 1", te)
	}
	for _, want := range []string{"pool primary", "1/1 connections in use", "orders 1"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if got := repoStats(t, s.Primary().Stats(), "users").Timeouts; got != 1 {
		t.Errorf("users timeouts: got %d; want 1", got)
	}
	rows.Close()
	if _, err := users.ExecContext(ctx, "INSERT INTO t (id, v) VALUES (1, 'x')"); err != nil {
		t.Errorf("exec after the rows closed: %v", err)
	}
}

func TestReadPoolIsReadOnly(t *testing.T) {
	ctx := context.Background()
	for _, backend := range []string{"sqlite", "mariadb"} {
		t.Run(backend, func(t *testing.T) {
			var s *poolset.Set
			var isReadOnly func(error) bool
			if backend == "sqlite" {
				s, isReadOnly = openSQLite(t, poolset.Config{}), sqlite.IsReadOnly
			} else {
				s, _ = openMariaDB(t, "poolset_t_readonly", poolset.Config{})
				isReadOnly = mysql.IsReadOnly
			}
			users := s.Handle("users")
			rows, err := users.Read().QueryContext(ctx, "INSERT INTO t (id, v) VALUES (1, 'written')")
			if err == nil {
				rows.Close()
			}
			if !isReadOnly(err) {
				t.Fatalf("write through a read handle: got %v; want a read-only error", err)
			}
			var n int
			if err := users.QueryRowContext(ctx, "SELECT COUNT(*) FROM t").Scan(&n); err != nil || n != 0 {
				t.Fatalf("rows after the refused write: got %d, %v; want 0", n, err)
			}
			if got := repoStats(t, s.Reads()[0].Stats(), "users").Queries; got != 1 {
				t.Errorf("queries on the read pool: got %d; want 1", got)
			}
		})
	}
}

func TestReadPoolDownFallsBack(t *testing.T) {
	ctx := context.Background()
	down, err := mysql.Replica("root:pw@tcp(127.0.0.1:1)/x", 0)
	if err != nil {
		t.Fatal(err)
	}
	down.Name = "replica-down"
	log, logs := newLogger()
	s, _ := openMariaDB(t, "poolset_t_fallback", poolset.Config{Logger: log})
	_ = down
	// A second set whose only read pool is down at start.
	primary := s.Primary().Config()
	s2, err := poolset.Open(ctx, poolset.Config{Primary: primary, Reads: []poolset.PoolConfig{down}, Logger: log})
	if err != nil {
		t.Fatalf("Open with a read pool down: got %v; want a warning only", err)
	}
	defer s2.Close(ctx)
	if !strings.Contains(logs.String(), "replica-down") || strings.Contains(logs.String(), "pw@") {
		t.Errorf("log: got %q; want a warning naming replica-down, no password", logs.String())
	}
	var n int
	if err := s2.Handle("users").Read().QueryRowContext(ctx, "SELECT COUNT(*) FROM t").Scan(&n); err != nil {
		t.Fatalf("read with the read pool down: %v", err)
	}
	if got := repoStats(t, s2.Primary().Stats(), "users").Fallbacks; got != 1 {
		t.Errorf("fallbacks: got %d; want 1", got)
	}
	strict := s2.HandleWithPolicy("reports", poolset.FailWithoutReadPool)
	err = strict.Read().QueryRowContext(ctx, "SELECT COUNT(*) FROM t").Scan(&n)
	if !errors.Is(err, poolset.ErrNoReadPool) {
		t.Errorf("read under FailWithoutReadPool: got %v; want ErrNoReadPool", err)
	}
}

func TestLeakDetection(t *testing.T) {
	ctx := context.Background()
	poolsettest.LockServer(t, poolsettest.SharedServers)
	log, logs := newLogger()
	s, _ := openMariaDB(t, "poolset_t_leak", poolset.Config{LeakThreshold: 50 * time.Millisecond, Logger: log})
	admin := adminDB(t)
	orders := s.Handle("orders")
	rows := leakRows(t, orders) // left open on purpose
	_ = rows
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), "leak threshold") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	out := logs.String()
	for _, want := range []string{"held past the leak threshold", "repo=orders", "kind=rows", "leakRows"} {
		if !strings.Contains(out, want) {
			t.Errorf("leak log lacks %q:\n%s", want, out)
		}
	}
	if got := repoStats(t, s.Primary().Stats(), "orders").Leaks; got != 1 {
		t.Errorf("orders leaks: got %d; want 1", got)
	}
	if n, _ := mysql.ConnectionsTo(ctx, admin, "poolset_t_leak"); n == 0 {
		t.Fatalf("server connections before release: got 0; want some")
	}
	rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	err := s.Close(rctx)
	if err == nil || !strings.Contains(err.Error(), "still held at close (orders rows)") {
		t.Errorf("close: got %v; want the leaked rows named", err)
	}
	if err == nil || !strings.Contains(err.Error(), "pool primary:") || strings.Contains(err.Error(), "pool read-1") {
		t.Errorf("close: got %v; want pool primary failed (closed with a leak), the read pool not", err)
	}
	if !strings.Contains(logs.String(), "still held at close") {
		t.Errorf("log lacks the release-time leak listing:\n%s", logs.String())
	}
	waitConnections(t, admin, "poolset_t_leak", 0)
}

// leakRows opens rows through h and returns them unclosed.
func leakRows(t *testing.T, h *poolset.Handle) *sql.Rows {
	rows, err := h.QueryContext(context.Background(), "SELECT id FROM t")
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

func TestReleaseIsCleanOnTheServer(t *testing.T) {
	ctx := context.Background()
	poolsettest.LockServer(t, poolsettest.SharedServers)
	admin := adminDB(t)
	threads0 := poolsettest.Steady(func() int64 { return status(t, admin, "Threads_connected") })
	aborted0 := poolsettest.Steady(func() int64 { return status(t, admin, "Aborted_clients") })
	s, _ := openMariaDB(t, "poolset_t_clean", poolset.Config{})
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			h := s.Handle([]string{"users", "orders", "products"}[i%3])
			for j := range 20 {
				if _, err := h.ExecContext(ctx, "INSERT INTO t (id, v) VALUES (?, 'x')", i*100+j); err != nil {
					t.Error(err)
					return
				}
				var n int
				if err := h.Read().QueryRowContext(ctx, "SELECT COUNT(*) FROM t").Scan(&n); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if n, _ := mysql.ConnectionsTo(ctx, admin, "poolset_t_clean"); n == 0 || n > 20 {
		t.Errorf("connections while open: got %d; want 1..20 (primary 10 + read 10)", n)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatalf("close: %v", err)
	}
	waitConnections(t, admin, "poolset_t_clean", 0)
	waitStatus(t, admin, "Threads_connected", threads0)
	if got := status(t, admin, "Aborted_clients"); got != aborted0 {
		t.Errorf("Aborted_clients: got %d; want %d (unchanged)", got, aborted0)
	}
	if _, err := s.Handle("users").ExecContext(ctx, "SELECT 1"); !errors.Is(err, poolset.ErrPoolClosed) {
		t.Errorf("exec after release: got %v; want ErrPoolClosed", err)
	}
}

// TestReleaseStepHangs: in a service's release stack, a step that hangs
// before the set's Close does not keep the pools open.
func TestReleaseStepHangs(t *testing.T) {
	ctx := context.Background()
	s := openSQLite(t, poolset.Config{})
	var rel release.Stack
	rel.AddTimeout("pools", s.CloseTimeout(), s.Close)
	unblock := make(chan struct{})
	defer close(unblock)
	rel.AddTimeout("stuck", 100*time.Millisecond, func(context.Context) error { <-unblock; return nil })
	rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	report, err := rel.Release(rctx)
	if err == nil || !strings.Contains(err.Error(), `"stuck"`) {
		t.Errorf("release: got %v; want the stuck step named", err)
	}
	if rctx.Err() != nil {
		t.Errorf("release returned after its deadline")
	}
	got := map[string]release.Outcome{}
	for _, st := range report.Steps {
		got[st.Name] = st.Outcome
	}
	want := map[string]release.Outcome{"stuck": release.TimedOut, "pools": release.OK}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("step %s: got %q; want %q\n%s", k, got[k], v, report)
		}
	}
	for _, st := range s.Stats() {
		if !st.Closed {
			t.Errorf("pool %s not closed after a stuck step before it", st.Name)
		}
	}
}

func TestOpenPrimaryUnreachable(t *testing.T) {
	pc, err := mysql.Primary("app:s3cretPW@tcp(127.0.0.1:1)/shop")
	if err != nil {
		t.Fatal(err)
	}
	_, err = poolset.Open(context.Background(), poolset.Config{Primary: pc})
	if err == nil {
		t.Fatal("Open: got nil; want an error")
	}
	msg := err.Error()
	if !strings.Contains(msg, "pool primary") || !strings.Contains(msg, "app:***@tcp(127.0.0.1:1)/shop") || strings.Contains(msg, "s3cretPW") {
		t.Errorf("error: got %q; want the pool and redacted address, no password", msg)
	}
}

func adminDB(t *testing.T) *sql.DB {
	t.Helper()
	db, err := sql.Open("mysql", poolsettest.MySQLDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	return db
}

func status(t *testing.T, db *sql.DB, name string) int64 {
	t.Helper()
	v, err := mysql.GlobalStatus(context.Background(), db, name)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// waitStatus waits up to 5 s for a server status to come back to want: the
// server ends a closed connection's thread a moment after the client left.
func waitStatus(t *testing.T, db *sql.DB, name string, want int64) {
	t.Helper()
	var got int64
	for range 500 {
		if got = status(t, db, name); got == want {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Errorf("%s: got %d; want %d", name, got, want)
}

func waitConnections(t *testing.T, db *sql.DB, dbName string, want int) {
	t.Helper()
	var got int
	for range 500 {
		got, _ = mysql.ConnectionsTo(context.Background(), db, dbName)
		if got == want {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Errorf("connections to %s: got %d; want %d", dbName, got, want)
}

// TestOpenFailureClosesWhatItOpened: an Open that fails half-way (the
// primary and a first read pool open, with its health check, the second
// read pool refused) closes what it had opened before it returns: no
// connection to the database is left, and no goroutine (TestMain's goleak).
func TestOpenFailureClosesWhatItOpened(t *testing.T) {
	ctx := context.Background()
	admin := adminDB(t)
	primary, read, _ := mariaDBConfigs(t, "poolset_t_openfail")
	bad, err := mysql.Replica("root@tcp(127.0.0.1:1)/x", 0)
	if err != nil {
		t.Fatal(err)
	}
	bad.ReadOnly = false // a read pool that is not read-only: Open must refuse it after opening the others
	_, err = poolset.Open(ctx, poolset.Config{Primary: primary, Reads: []poolset.PoolConfig{read, bad}})
	if err == nil || !strings.Contains(err.Error(), "must be read-only") {
		t.Fatalf("Open: got %v; want the read pool refused", err)
	}
	waitConnections(t, admin, "poolset_t_openfail", 0)
}

// TestServiceReleaseOrder: a service registers the set's Close on its own
// release stack the moment Open returns, after what it opened before the
// set (a broker): one Release closes the pools, then the broker.
func TestServiceReleaseOrder(t *testing.T) {
	ctx := context.Background()
	var rel release.Stack
	brokerClosed := false
	rel.Add("broker", func(context.Context) error { brokerClosed = true; return nil })
	primary, _, err := sqlite.PoolConfigs(filepath.Join(t.TempDir(), "ok.db"), 1)
	if err != nil {
		t.Fatal(err)
	}
	s, err := poolset.Open(ctx, poolset.Config{Primary: primary})
	if err != nil {
		t.Fatal(err)
	}
	rel.AddTimeout("pools", s.CloseTimeout(), s.Close)
	report, err := rel.Release(ctx)
	if err != nil || len(report.Steps) != 2 || report.Steps[0].Name != "pools" || report.Steps[1].Name != "broker" || !brokerClosed {
		t.Errorf("release: got %v, %v; want the pools, then the broker registered before them", report, err)
	}
	if !s.Primary().Stats().Closed {
		t.Error("primary not closed by the release")
	}
}

func TestCloseWhileAcquiring(t *testing.T) {
	ctx := context.Background()
	primary, _, err := sqlite.PoolConfigs(filepath.Join(t.TempDir(), "c.db"), 1)
	if err != nil {
		t.Fatal(err)
	}
	primary.CloseWait = 100 * time.Millisecond
	s, err := poolset.Open(ctx, poolset.Config{Primary: primary})
	if err != nil {
		t.Fatal(err)
	}
	h := s.Handle("orders")
	rows, err := h.QueryContext(ctx, "SELECT 1") // holds the only connection
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	waiterErr := make(chan error, 1)
	go func() {
		_, err := s.Handle("users").ExecContext(ctx, "SELECT 1") // waits for that connection
		waiterErr <- err
	}()
	for s.Primary().Stats().Waiting == 0 {
		time.Sleep(time.Millisecond)
	}
	s.Close(ctx) // force-closes the rows, which hands the connection to the waiter
	if err := <-waiterErr; !errors.Is(err, poolset.ErrPoolClosed) {
		t.Errorf("acquire that was waiting when the pool closed: got %v; want ErrPoolClosed", err)
	}
	if st := s.Primary().Stats(); st.InUse != 0 || st.Open != 0 {
		t.Errorf("after release: got in use %d, open %d; want 0, 0", st.InUse, st.Open)
	}
}

// TestCloseTwice: Set.Close is idempotent and safe for concurrent use:
// every call, concurrent with the first or after it, returns the first
// call's result, here the rows still held.
func TestCloseTwice(t *testing.T) {
	ctx := context.Background()
	primary, read, err := sqlite.PoolConfigs(filepath.Join(t.TempDir(), "c.db"), 1)
	if err != nil {
		t.Fatal(err)
	}
	primary.CloseWait = 50 * time.Millisecond
	s, err := poolset.Open(ctx, poolset.Config{Primary: primary, Reads: []poolset.PoolConfig{read}})
	if err != nil {
		t.Fatal(err)
	}
	rows, err := s.Handle("orders").QueryContext(ctx, "SELECT 1") // still held at close
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	errs := make([]error, 4)
	var wg sync.WaitGroup
	for i := range errs {
		wg.Go(func() { errs[i] = s.Close(ctx) })
	}
	wg.Wait()
	if errs[0] == nil || !strings.Contains(errs[0].Error(), "still held at close (orders rows)") {
		t.Fatalf("Close: got %v; want the held rows named", errs[0])
	}
	for i, err := range append(errs, s.Close(ctx)) {
		if err != errs[0] {
			t.Errorf("Close call %d: got %v; want the first call's result", i, err)
		}
	}
	for _, st := range s.Stats() {
		if !st.Closed || st.Open != 0 {
			t.Errorf("pool %s after Close: got closed %v, open %d; want true, 0", st.Name, st.Closed, st.Open)
		}
	}
}

// TestCloseTimeout: the budget a release step gives Close covers, for each
// pool, its CloseWait and, for a read pool with a health check, two
// intervals.
func TestCloseTimeout(t *testing.T) {
	primary, read, err := sqlite.PoolConfigs(filepath.Join(t.TempDir(), "c.db"), 1)
	if err != nil {
		t.Fatal(err)
	}
	primary.CloseWait, read.CloseWait = 700*time.Millisecond, 900*time.Millisecond
	read.Health = poolset.HealthFunc(func(ctx context.Context, conn *sql.Conn) error { return conn.PingContext(ctx) })
	read.HealthInterval = 400 * time.Millisecond
	s := mustOpen(t, poolset.Config{Primary: primary, Reads: []poolset.PoolConfig{read}})
	if got, least := s.CloseTimeout(), 700*time.Millisecond+900*time.Millisecond+2*400*time.Millisecond; got < least {
		t.Errorf("CloseTimeout: got %s; want at least %s (the CloseWaits and two health intervals)", got, least)
	}
}

// TestSlowHealthCheckIsNotCut: a health check that answers slowly takes
// its read pool out of the rotation after two intervals, but is not
// cancelled (cancelling a query cuts its connection, which the server
// counts as an aborted client); the pool stays out while checks are slow
// and rejoins when one answers in time.
func TestSlowHealthCheckIsNotCut(t *testing.T) {
	ctx := context.Background()
	poolsettest.LockServer(t, poolsettest.SharedServers)
	admin := adminDB(t)
	aborted0 := poolsettest.Steady(func() int64 { return status(t, admin, "Aborted_clients") })
	primary, read, _ := mariaDBConfigs(t, "poolset_t_slowcheck")
	var slow atomic.Bool
	var slowChecks atomic.Int64
	read.HealthInterval = 250 * time.Millisecond
	read.Health = poolset.HealthFunc(func(ctx context.Context, conn *sql.Conn) error {
		if slow.Load() {
			slowChecks.Add(1)
			_, err := conn.ExecContext(ctx, "DO SLEEP(1.5)")
			return err
		}
		return conn.PingContext(ctx)
	})
	s := mustOpen(t, poolset.Config{Primary: primary, Reads: []poolset.PoolConfig{read}})
	pool := func() poolset.PoolStats { return s.Stats()[1] }
	eventuallyTrue(t, "the read pool in the rotation", func() bool { return pool().Healthy })
	st0 := pool()

	slow.Store(true)
	eventuallyTrue(t, "the slow pool out of the rotation", func() bool { return !pool().Healthy })
	if got := pool().Unhealthy; !strings.Contains(got, "no answer within 500ms") && !strings.Contains(got, "over 500ms") {
		t.Errorf("Unhealthy: got %q; want it to say the check did not answer within 500ms", got)
	}
	// A slow check that passes does not bring the pool back.
	eventuallyTrue(t, "a second slow check", func() bool { return slowChecks.Load() >= 2 })
	if st := pool(); st.Healthy {
		t.Errorf("after a slow check passed: healthy; want out of the rotation (%q)", st.Unhealthy)
	}
	slow.Store(false)
	eventuallyTrue(t, "the pool back in the rotation", func() bool { return pool().Healthy })
	if st := pool(); st.Leaves-st0.Leaves < 1 || st.Rejoins-st0.Rejoins != st.Leaves-st0.Leaves {
		t.Errorf("leaves, rejoins: got %d, %d since the start; want as many rejoins as leaves, at least 1",
			st.Leaves-st0.Leaves, st.Rejoins-st0.Rejoins)
	}

	if err := s.Close(ctx); err != nil {
		t.Fatalf("close: %v", err)
	}
	waitConnections(t, admin, "poolset_t_slowcheck", 0)
	if got := status(t, admin, "Aborted_clients"); got != aborted0 {
		t.Errorf("Aborted_clients: got %d; want %d (no check was cut)", got, aborted0)
	}
}

// eventuallyTrue polls cond every 10 ms for up to 10 s and fails t if it
// never holds. It bounds a wait; it asserts nothing about time.
func eventuallyTrue(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for range 1000 {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s: not within 10 s", what)
}
