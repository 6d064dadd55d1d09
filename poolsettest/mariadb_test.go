package poolsettest_test

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"

	"github.com/poolset/poolset/poolsettest"
)

func open(t *testing.T, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func mustExec(t *testing.T, db *sql.DB, query string, args ...any) {
	t.Helper()
	if _, err := db.ExecContext(t.Context(), query, args...); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}

// count returns how many rows of table t have id.
func count(t *testing.T, db *sql.DB, id int) int {
	t.Helper()
	var n int
	if err := db.QueryRowContext(t.Context(), "SELECT COUNT(*) FROM t WHERE id = ?", id).Scan(&n); err != nil {
		t.Fatalf("count id %d: %v", id, err)
	}
	return n
}

func waitCaughtUp(t *testing.T, p *poolsettest.Pair, r *poolsettest.Instance) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	if err := p.WaitCaughtUp(ctx, r); err != nil {
		t.Fatal(err)
	}
}

func TestMariaDBPair(t *testing.T) {
	start := time.Now()
	p := poolsettest.MariaDBPair(t, "app", 1)
	t.Logf("StartPair with 1 replica took %v", time.Since(start).Round(time.Millisecond))
	if got := len(p.Replicas); got != 1 {
		t.Fatalf("got %d replicas; want 1", got)
	}
	r := p.Replicas[0]
	if got, want := p.Primary.ServerID, 1; got != want {
		t.Errorf("got primary server id %d; want %d", got, want)
	}
	if got, want := r.ServerID, 2; got != want {
		t.Errorf("got replica server id %d; want %d", got, want)
	}
	primary := open(t, p.Primary.DSN("app"))
	replica := open(t, r.DSN("app"))

	t.Run("replicates", func(t *testing.T) {
		mustExec(t, primary, "CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20))")
		mustExec(t, primary, "INSERT INTO t VALUES (1, 'one')")
		waitCaughtUp(t, p, r)
		var v string
		if err := replica.QueryRowContext(t.Context(), "SELECT v FROM t WHERE id = 1").Scan(&v); err != nil {
			t.Fatal(err)
		}
		if v != "one" {
			t.Errorf("got v %q on replica; want %q", v, "one")
		}
	})

	t.Run("read only", func(t *testing.T) {
		var ro int
		if err := replica.QueryRowContext(t.Context(), "SELECT @@read_only").Scan(&ro); err != nil {
			t.Fatal(err)
		}
		if ro != 1 {
			t.Errorf("got replica read_only %d; want 1", ro)
		}
		if err := primary.QueryRowContext(t.Context(), "SELECT @@read_only").Scan(&ro); err != nil {
			t.Fatal(err)
		}
		if ro != 0 {
			t.Errorf("got primary read_only %d; want 0", ro)
		}
	})

	t.Run("sql thread", func(t *testing.T) {
		if err := r.StopSQLThread(t.Context()); err != nil {
			t.Fatal(err)
		}
		mustExec(t, primary, "INSERT INTO t VALUES (2, 'two')")
		time.Sleep(500 * time.Millisecond)
		if got := count(t, replica, 2); got != 0 {
			t.Errorf("got %d rows with id 2 on replica while its SQL thread is stopped; want 0", got)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
		err := p.WaitCaughtUp(ctx, r)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("got WaitCaughtUp error %v with SQL thread stopped; want deadline exceeded", err)
		}
		if err := r.StartSQLThread(t.Context()); err != nil {
			t.Fatal(err)
		}
		waitCaughtUp(t, p, r)
		if got := count(t, replica, 2); got != 1 {
			t.Errorf("got %d rows with id 2 on replica after StartSQLThread; want 1", got)
		}
	})

	t.Run("kill and start replica", func(t *testing.T) {
		if err := r.Kill(); err != nil {
			t.Fatal(err)
		}
		if r.Running() {
			t.Fatal("replica running after Kill")
		}
		if err := r.Kill(); err != nil {
			t.Errorf("second Kill: %v", err)
		}
		mustExec(t, primary, "INSERT INTO t VALUES (3, 'three')")
		if err := r.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		if !r.Running() {
			t.Fatal("replica not running after Start")
		}
		if err := r.Start(t.Context()); err == nil {
			t.Error("second Start succeeded; want an error")
		}
		waitCaughtUp(t, p, r)
		if got := count(t, replica, 3); got != 1 {
			t.Errorf("got %d rows with id 3 on replica after restart; want 1", got)
		}
		mustExec(t, primary, "INSERT INTO t VALUES (4, 'four')")
		waitCaughtUp(t, p, r)
		if got := count(t, replica, 4); got != 1 {
			t.Errorf("got %d rows with id 4 on replica after restart; want 1", got)
		}
	})

	t.Run("start on a taken port", func(t *testing.T) {
		if err := r.Stop(); err != nil {
			t.Fatal(err)
		}
		port := r.Port
		r.Port = p.Primary.Port
		err := r.Start(t.Context())
		r.Port = port
		if err == nil {
			t.Fatal("Start on the primary's port succeeded; want an error")
		}
		t.Logf("Start on the primary's port: %.200s", err)
		if r.Running() {
			t.Error("replica running after a failed Start")
		}
		if err := r.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		waitCaughtUp(t, p, r)
	})

	t.Run("stop", func(t *testing.T) {
		if err := p.Stop(); err != nil {
			t.Fatal(err)
		}
		if p.Primary.Running() || r.Running() {
			t.Error("instance running after Stop")
		}
		if err := p.Stop(); err != nil {
			t.Errorf("second Stop: %v", err)
		}
	})
}

func TestMariaDBPairTwoReplicasAddReplica(t *testing.T) {
	start := time.Now()
	p := poolsettest.MariaDBPair(t, "app", 2)
	t.Logf("StartPair with 2 replicas took %v", time.Since(start).Round(time.Millisecond))
	primary := open(t, p.Primary.DSN("app"))
	mustExec(t, primary, "CREATE TABLE t (id INT PRIMARY KEY)")
	mustExec(t, primary, "INSERT INTO t VALUES (1)")

	start = time.Now()
	added, err := p.AddReplica(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("AddReplica took %v", time.Since(start).Round(time.Millisecond))
	if got, want := added.Name, "replica-3"; got != want {
		t.Errorf("got name %q; want %q", got, want)
	}
	if got, want := added.ServerID, 4; got != want {
		t.Errorf("got server id %d; want %d", got, want)
	}
	if got := len(p.Replicas); got != 3 {
		t.Fatalf("got %d replicas; want 3", got)
	}
	for _, r := range p.Replicas {
		waitCaughtUp(t, p, r)
		if got := count(t, open(t, r.DSN("app")), 1); got != 1 {
			t.Errorf("got %d rows with id 1 on %s; want 1", got, r.Name)
		}
	}
}

// TestStartPairNoReplicas: 0 replicas is a primary alone, with its
// database, that can be killed and started again; fewer is an error.
func TestStartPairNoReplicas(t *testing.T) {
	if _, err := poolsettest.StartPair(t.Context(), t.TempDir(), "app", -1); err == nil {
		t.Error("StartPair with -1 replicas succeeded; want an error")
	}
	p := poolsettest.MariaDBPair(t, "app", 0)
	if len(p.Replicas) != 0 {
		t.Fatalf("replicas: got %d; want 0", len(p.Replicas))
	}
	query := func() error {
		db, err := sql.Open("mysql", p.Primary.DSN("app"))
		if err != nil {
			return err
		}
		defer db.Close()
		return db.PingContext(t.Context())
	}
	if err := query(); err != nil {
		t.Fatalf("primary: %v", err)
	}
	if err := p.Primary.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := query(); err == nil {
		t.Error("primary answered after Kill; want no answer")
	}
	if err := p.Primary.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := query(); err != nil {
		t.Errorf("primary after Start: %v", err)
	}
}

// TestInstanceTmpdirPrivate: each instance has a tmpdir of its own, beside
// its data directory, before and after a restart. With the shared default
// (/tmp), every mariadbd's startup deleted the other servers' live
// temporary tables (#sql* files), and a mariadb-install-db running at the
// same time failed.
func TestInstanceTmpdirPrivate(t *testing.T) {
	p := poolsettest.MariaDBPair(t, "", 0)
	check := func(when string) {
		t.Helper()
		var got string
		if err := open(t, p.Primary.DSN("")).QueryRowContext(t.Context(), "SELECT @@tmpdir").Scan(&got); err != nil {
			t.Fatalf("%s: %v", when, err)
		}
		want := p.Primary.Dir + ".tmp"
		if filepath.Clean(got) != want || filepath.Clean(got) == filepath.Clean(os.TempDir()) {
			t.Errorf("%s: got tmpdir %s; want %s (the instance's own)", when, got, want)
		}
	}
	check("started")
	if err := p.Primary.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := p.Primary.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	check("started again")
}
