package postgres_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/poolset/poolset"
	"github.com/poolset/poolset/metrics"
	"github.com/poolset/poolset/poolsettest"
)

// TestStandbyRotation runs a set on a primary and two standbys with
// postgres.Standby's health check: a standby that hangs (SIGSTOP), dies
// (SIGKILL), lags (replay paused while the primary writes) or is down at
// open leaves the rotation, the reads go on without errors on the other
// standby or the primary, and it comes back by itself; the lag shows in
// Stats, the Tree and the metrics.
func TestStandbyRotation(t *testing.T) {
	pair := standbyPair(t, 2)
	s1, s2 := pair.Standbys[0], pair.Standbys[1]
	running := func(t *testing.T, s *poolsettest.PGInstance) {
		t.Helper()
		if !s.Running() {
			if err := s.Start(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
		caughtUp(t, pair, s)
	}
	// servedBy waits until pool has served n more reads of repo users.
	servedBy := func(t *testing.T, set *poolset.Set, pool string, n int64) {
		t.Helper()
		q0 := repoOf(t, set, pool, "users").Queries
		eventually(t, fmt.Sprintf("%d reads served by %s", n, pool), loadBound, func() (bool, string) {
			q := repoOf(t, set, pool, "users").Queries
			return q >= q0+n, fmt.Sprintf("%d queries", q-q0)
		})
	}

	t.Run("SIGSTOP", func(t *testing.T) {
		set := openSet(t, pair, pair.Standbys, 0, nil)
		inRotation(t, set, s1.Name, true)
		inRotation(t, set, s2.Name, true)
		if err := s1.Pause(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s1.Resume() })
		t.Logf("%s left the rotation within %.1f health intervals of SIGSTOP", s1.Name, inRotation(t, set, s1.Name, false))
		// Reads sent to s1 in the moment before it left would hang with it;
		// the load starts once it is out.
		users := set.Handle("users")
		load := startLoad(t, users, 4)
		servedBy(t, set, s2.Name, 100)
		q1 := repoOf(t, set, s1.Name, "users").Queries
		servedBy(t, set, s2.Name, 100)
		if got := repoOf(t, set, s1.Name, "users").Queries; got != q1 {
			t.Errorf("reads on the stopped %s: got %d more; want none", s1.Name, got-q1)
		}
		if err := s1.Resume(); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s back within %.1f health intervals of SIGCONT", s1.Name, inRotation(t, set, s1.Name, true))
		servedBy(t, set, s1.Name, 50)
		load.check(t)
		if st := poolOf(t, set, s1.Name); st.Leaves != 1 || st.Rejoins != 1 {
			t.Errorf("%s: got %d leaves, %d rejoins; want 1, 1", s1.Name, st.Leaves, st.Rejoins)
		}
	})

	t.Run("SIGKILL mid-load", func(t *testing.T) {
		running(t, s1)
		set := openSet(t, pair, pair.Standbys, 0, nil)
		inRotation(t, set, s1.Name, true)
		inRotation(t, set, s2.Name, true)
		load := startLoad(t, set.Handle("users"), 4)
		servedBy(t, set, s1.Name, 100)
		if err := s1.Kill(); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s left the rotation within %.1f health intervals of SIGKILL", s1.Name, inRotation(t, set, s1.Name, false))
		servedBy(t, set, s2.Name, 100)
		if err := s1.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s back within %.1f health intervals of its restart", s1.Name, inRotation(t, set, s1.Name, true))
		servedBy(t, set, s1.Name, 100)
		load.check(t)
		if st := poolOf(t, set, s1.Name); st.Leaves < 1 || st.Rejoins < 1 {
			t.Errorf("%s: got %d leaves, %d rejoins; want at least 1 each", s1.Name, st.Leaves, st.Rejoins)
		}
		t.Logf("\n%s", set.Tree())
	})

	t.Run("replay paused lags", func(t *testing.T) {
		ctx := t.Context()
		running(t, s1)
		set := openSet(t, pair, pair.Standbys, 0, nil)
		inRotation(t, set, s1.Name, true)
		inRotation(t, set, s2.Name, true)
		// The primary writes all along, so that s2 receives WAL it does
		// not replay.
		primary := openDB(t, pair.Primary.DSN("shop"))
		if _, err := primary.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS ticks (n bigint)"); err != nil {
			t.Fatal(err)
		}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				case <-time.After(10 * time.Millisecond):
				}
				primary.ExecContext(context.Background(), "INSERT INTO ticks VALUES (1)")
			}
		})
		defer func() { close(stop); wg.Wait() }()
		if err := s2.PauseReplay(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s2.ResumeReplay(context.Background()) })
		t.Logf("%s left the rotation within %.1f health intervals of the pause", s2.Name, inRotation(t, set, s2.Name, false))
		st := poolOf(t, set, s2.Name)
		if !st.LagKnown || st.Lag <= time.Second || !strings.Contains(st.Unhealthy, "behind") {
			t.Errorf("%s lagging: got lag %v (known %v), unhealthy %q; want over the 1s limit, and why", s2.Name, st.Lag, st.LagKnown, st.Unhealthy)
		}
		tree := set.Tree()
		if !strings.Contains(tree, s2.Name+" (postgres, read-only, out of rotation") || !strings.Contains(tree, ", lag ") {
			t.Errorf("tree: want %s out of the rotation with its lag; got\n%s", s2.Name, tree)
		}
		if lag, ok := lagMetric(t, set, s2.Name); !ok || lag <= 1 {
			t.Errorf("poolset_pool_replication_lag_seconds{pool=%q}: got %v (present %v); want over 1", s2.Name, lag, ok)
		}
		load := startLoad(t, set.Handle("users"), 4)
		q2 := repoOf(t, set, s2.Name, "users").Queries
		servedBy(t, set, s1.Name, 100)
		if got := repoOf(t, set, s2.Name, "users").Queries; got != q2 {
			t.Errorf("reads on the lagging %s: got %d more; want none", s2.Name, got-q2)
		}
		if err := s2.ResumeReplay(ctx); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s back within %.1f health intervals of the resume", s2.Name, inRotation(t, set, s2.Name, true))
		servedBy(t, set, s2.Name, 50)
		load.check(t)
		if st := poolOf(t, set, s2.Name); !st.LagKnown || st.Lag > time.Second {
			t.Errorf("%s after the resume: got lag %v (known %v); want known, within the limit", s2.Name, st.Lag, st.LagKnown)
		}
		t.Logf("\n%s", set.Tree())
	})

	t.Run("down at open", func(t *testing.T) {
		ctx := t.Context()
		running(t, s2)
		if err := s1.Kill(); err != nil {
			t.Fatal(err)
		}
		set := openSet(t, pair, []*poolsettest.PGInstance{s1}, 0, nil)
		if st := poolOf(t, set, s1.Name); st.Healthy || st.Unhealthy == "" {
			t.Errorf("%s at open: got healthy %v, unhealthy %q; want out, with a reason", s1.Name, st.Healthy, st.Unhealthy)
		}
		users := set.Handle("users")
		for i := range 10 {
			if name, err := readUser(ctx, users, i+1); err != nil || name != fmt.Sprintf("user-%d", i+1) {
				t.Fatalf("read %d with the standby down: got %q, %v", i, name, err)
			}
		}
		if got := repoOf(t, set, "primary", "users"); got.Fallbacks != 10 || got.Queries != 10 {
			t.Errorf("users on the primary: got %d fallbacks, %d queries; want 10, 10", got.Fallbacks, got.Queries)
		}
		if err := s1.Start(ctx); err != nil {
			t.Fatal(err)
		}
		inRotation(t, set, s1.Name, true)
		if _, err := readUser(ctx, users, 1); err != nil {
			t.Fatal(err)
		}
		if got := repoOf(t, set, s1.Name, "users").Queries; got != 1 {
			t.Errorf("users on %s after its start: got %d queries; want 1", s1.Name, got)
		}
	})
}

// lagMetric returns poolset_pool_replication_lag_seconds of pool, as the
// metrics package's collector reports it, and whether it is there.
func lagMetric(t *testing.T, set *poolset.Set, pool string) (float64, bool) {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(metrics.NewSetCollector(set))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "poolset_pool_replication_lag_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "pool" && l.GetValue() == pool {
					return m.GetGauge().GetValue(), true
				}
			}
		}
	}
	return 0, false
}
