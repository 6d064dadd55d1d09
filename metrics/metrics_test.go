package metrics_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

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
	defer set.Release(ctx)
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
