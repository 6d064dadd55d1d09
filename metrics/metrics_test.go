package metrics_test

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/poolset/poolset"
	"github.com/poolset/poolset/metrics"
	"github.com/poolset/poolset/sqlite"
)

func TestSetCollector(t *testing.T) {
	ctx := context.Background()
	primary, read, err := sqlite.PoolConfigs(filepath.Join(t.TempDir(), "m.db"), 2)
	if err != nil {
		t.Fatal(err)
	}
	set, err := poolset.Open(ctx, poolset.Config{Primary: primary, Reads: []poolset.PoolConfig{read}})
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close(ctx)
	h := set.Handle("orders")
	for range 3 {
		if _, err := h.ExecContext(ctx, "SELECT 1"); err != nil {
			t.Fatal(err)
		}
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(metrics.NewSetCollector(set))
	want := `
# HELP poolset_repo_queries_total Statements a repository ran.
# TYPE poolset_repo_queries_total counter
poolset_repo_queries_total{pool="primary",repo="orders"} 3
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "poolset_repo_queries_total"); err != nil {
		t.Error(err)
	}
	n, err := testutil.GatherAndCount(reg, "poolset_pool_max_open_connections")
	if err != nil || n != 2 {
		t.Errorf("max open series: got %d, %v; want 2 (primary, read-1)", n, err)
	}
}

// TestSetCollectorRotation: a read pool whose health check fails is out of
// the rotation, and the lag its check reports is exported.
func TestSetCollectorRotation(t *testing.T) {
	ctx := context.Background()
	primary, read, err := sqlite.PoolConfigs(filepath.Join(t.TempDir(), "m.db"), 2)
	if err != nil {
		t.Fatal(err)
	}
	read.Health = behind{}
	set, err := poolset.Open(ctx, poolset.Config{Primary: primary, Reads: []poolset.PoolConfig{read}})
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close(ctx)
	reg := prometheus.NewRegistry()
	reg.MustRegister(metrics.NewSetCollector(set))
	want := `
# HELP poolset_pool_in_rotation 1 while the pool takes reads (open, and its health check passing).
# TYPE poolset_pool_in_rotation gauge
poolset_pool_in_rotation{pool="primary",role="primary"} 1
poolset_pool_in_rotation{pool="read-1",role="read"} 0
# HELP poolset_pool_replication_lag_seconds Replication lag the read pool's health check last measured; absent while unknown.
# TYPE poolset_pool_replication_lag_seconds gauge
poolset_pool_replication_lag_seconds{pool="read-1",role="read"} 1.5
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "poolset_pool_in_rotation", "poolset_pool_replication_lag_seconds"); err != nil {
		t.Error(err)
	}
	if tree := set.Tree(); !strings.Contains(tree, "out of rotation: replica behind, lag 1.5s") {
		t.Errorf("tree lacks the read pool's state and lag:\n%s", tree)
	}
}

// behind is a health check that always fails, with a known lag.
type behind struct{}

func (behind) Check(context.Context, *sql.Conn) error { return errors.New("replica behind") }
func (behind) Lag() (time.Duration, bool)             { return 1500 * time.Millisecond, true }
