package metrics_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/poolset/poolset"
	"github.com/poolset/poolset/metrics"
	"github.com/poolset/poolset/mysql"
	"github.com/poolset/poolset/poolsettest"
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

// TestSetCollectorHistograms: under load through three repositories on
// the test MariaDB, with pools of two connections so that callers queue,
// the scrape served by promhttp has a wait and a hold histogram per
// repository and a connect histogram per pool, with cumulative buckets
// that agree with the core's counts, and promtool finds nothing to say
// about the whole scrape.
func TestSetCollectorHistograms(t *testing.T) {
	ctx := context.Background()
	dsn := poolsettest.MySQLDatabase(t, "poolset_t_metrics_histograms")
	primary, err := mysql.Primary(dsn)
	if err != nil {
		t.Fatal(err)
	}
	read, err := mysql.Replica(dsn, 0)
	if err != nil {
		t.Fatal(err)
	}
	primary.MaxOpen, read.MaxOpen = 2, 2
	read.Health = nil // no connections but the repositories'
	set, err := poolset.Open(ctx, poolset.Config{Primary: primary, Reads: []poolset.PoolConfig{read}})
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close(ctx)
	if _, err := set.Primary().DB().ExecContext(ctx, "CREATE TABLE t (id INT AUTO_INCREMENT PRIMARY KEY, v INT NOT NULL)"); err != nil {
		t.Fatal(err)
	}

	// A wait of each repository, made sure of: the other (or, on the read
	// pool, the same) repository holds every connection of the pool in
	// transactions until the call is seen waiting.
	orders, stock, users := set.Handle("orders"), set.Handle("stock"), set.Handle("users")
	forceWait(t, set.Primary(), "stock", orders.BeginTx, func() error {
		var n int
		return stock.QueryRowContext(ctx, "SELECT COUNT(*) FROM t").Scan(&n)
	})
	forceWait(t, set.Primary(), "orders", stock.BeginTx, func() error {
		_, err := orders.ExecContext(ctx, "INSERT INTO t (v) VALUES (1)")
		return err
	})
	forceWait(t, set.Reads()[0], "users", users.Read().BeginTx, func() error {
		var n int
		return users.Read().QueryRowContext(ctx, "SELECT 1").Scan(&n)
	})

	// Then a load: four callers a repository, ten statements each, on
	// pools of two connections.
	const callers, statements = 4, 10
	work := map[string]func() error{
		"orders": func() error {
			_, err := orders.ExecContext(ctx, "INSERT INTO t (v) VALUES (1)")
			return err
		},
		"stock": func() error {
			var n int
			return stock.QueryRowContext(ctx, "SELECT COUNT(*) FROM t").Scan(&n)
		},
		"users": func() error {
			var n int
			return users.Read().QueryRowContext(ctx, "SELECT SLEEP(0.001)").Scan(&n)
		},
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(work)*callers)
	for repo, do := range work {
		for range callers {
			wg.Go(func() {
				for range statements {
					if err := do(); err != nil {
						errs <- fmt.Errorf("%s: %w", repo, err)
						return
					}
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(metrics.NewSetCollector(set))
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.HTTPErrorOnError}))
	defer srv.Close()
	body := scrape(t, srv.URL)
	stats := set.Stats() // nothing runs now: the same figures as the scrape's
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parse the scrape: %v\n%s", err, body)
	}

	wantPool := map[string]string{"orders": "primary", "stock": "primary", "users": "read-1"}
	for repo, pool := range wantPool {
		r := repoOf(t, stats, pool, repo)
		if r.Acquires < callers*statements || r.WaitTimes.Count != r.Acquires+r.Timeouts || r.HoldTimes.Count != r.Acquires {
			t.Errorf("%s: acquires %d, timeouts %d, waits %d, holds %d; want at least %d acquires, a wait each and a hold each",
				repo, r.Acquires, r.Timeouts, r.WaitTimes.Count, r.HoldTimes.Count, callers*statements)
		}
		labels := map[string]string{"pool": pool, "repo": repo}
		if sum := sampleSum(families, "poolset_repo_acquire_wait_duration_seconds", labels); sum <= 0 {
			t.Errorf("%s: acquire wait _sum %g; want above 0 (the wait made sure of)", repo, sum)
		}
		checkHistogram(t, families, "poolset_repo_acquire_wait_duration_seconds", labels, r.WaitTimes)
		checkHistogram(t, families, "poolset_repo_hold_duration_seconds", labels, r.HoldTimes)
	}
	for _, p := range stats {
		if p.CreateTimes.Count == 0 {
			t.Errorf("pool %s: no connection opened", p.Name)
		}
		checkHistogram(t, families, "poolset_pool_connect_duration_seconds", map[string]string{"pool": p.Name, "role": p.Role}, p.CreateTimes)
	}
	// The existing series are still there, beside the histograms.
	for _, name := range []string{"poolset_repo_acquire_wait_seconds_total", "poolset_repo_queries_total", "poolset_pool_open_connections"} {
		if families[name] == nil {
			t.Errorf("scrape lacks %s", name)
		}
	}
	poolsettest.CheckMetrics(t, body)

	// In OpenMetrics a counter's family drops its _total: none may share
	// its name with a histogram (poolset_repo_acquire_wait_seconds_total
	// and a histogram poolset_repo_acquire_wait_seconds would).
	om := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{EnableOpenMetrics: true}))
	defer om.Close()
	req, err := http.NewRequest(http.MethodGet, om.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/openmetrics-text; version=1.0.0")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	omBody, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || !strings.Contains(resp.Header.Get("Content-Type"), "openmetrics") {
		t.Fatalf("OpenMetrics scrape: %v, content type %q", err, resp.Header.Get("Content-Type"))
	}
	seen := map[string]bool{}
	for _, line := range strings.Split(string(omBody), "\n") {
		if f := strings.Fields(line); len(f) >= 3 && f[0] == "#" && f[1] == "TYPE" {
			if seen[f[2]] {
				t.Errorf("OpenMetrics exposition lists family %s twice", f[2])
			}
			seen[f[2]] = true
		}
	}
}

// forceWait makes repo wait for a connection of p: hold takes every
// connection p lends in transactions, call runs in its own goroutine until
// repo is seen waiting on p, then the transactions end and call returns.
func forceWait(t *testing.T, p *poolset.Pool, repo string, hold func(context.Context, *sql.TxOptions) (*sql.Tx, error), call func() error) {
	t.Helper()
	ctx := context.Background()
	var txs []*sql.Tx
	for range p.Stats().MaxOpen {
		tx, err := hold(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		txs = append(txs, tx)
	}
	done := make(chan error, 1)
	go func() { done <- call() }() // ends when the transactions below end
	waiting := func() bool {
		for _, r := range p.Stats().Repos {
			if r.Repo == repo && r.Waiting == 1 {
				return true
			}
		}
		return false
	}
	for i := 0; !waiting(); i++ {
		if i == 10000 {
			t.Fatalf("%s never waited on %s", repo, p.Stats().Name)
		}
		time.Sleep(time.Millisecond)
	}
	for _, tx := range txs {
		if err := tx.Rollback(); err != nil {
			t.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("%s: %v", repo, err)
	}
}

// sampleSum returns the _sum of the series of histogram family name with
// labels, or -1 when there is none.
func sampleSum(families map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	if m := seriesOf(families[name], labels); m != nil {
		return m.GetHistogram().GetSampleSum()
	}
	return -1
}

// seriesOf returns the series of f with exactly labels, or nil.
func seriesOf(f *dto.MetricFamily, labels map[string]string) *dto.Metric {
	for _, m := range f.GetMetric() {
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		if fmt.Sprint(got) == fmt.Sprint(labels) {
			return m
		}
	}
	return nil
}

// scrape GETs url and returns the body, in the Prometheus text format.
func scrape(t *testing.T, url string) []byte {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/plain; version=0.0.4")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %s, %v\n%s", resp.Status, err, body)
	}
	return body
}

// repoOf returns the stats of repo on the pool named pool.
func repoOf(t *testing.T, stats []poolset.PoolStats, pool, repo string) poolset.RepoStats {
	t.Helper()
	for _, p := range stats {
		for _, r := range p.Repos {
			if p.Name == pool && r.Repo == repo {
				return r
			}
		}
	}
	t.Fatalf("no stats of %s on %s", repo, pool)
	return poolset.RepoStats{}
}

// checkHistogram finds the series of histogram family name with labels and
// checks it against the core's h: a bucket per bound of
// poolset.HistogramBounds (in seconds) and +Inf, cumulative, each equal to
// the sum of h's counts up to it, the last one and the count equal to
// h.Count (not zero), and the sum equal to h.Sum.
func checkHistogram(t *testing.T, families map[string]*dto.MetricFamily, name string, labels map[string]string, h poolset.Histogram) {
	t.Helper()
	f := families[name]
	if f == nil || f.GetType() != dto.MetricType_HISTOGRAM {
		t.Errorf("scrape lacks histogram %s", name)
		return
	}
	m := seriesOf(f, labels)
	if m == nil {
		t.Errorf("%s: no series %v", name, labels)
		return
	}
	hist := m.GetHistogram()
	if hist.GetSampleCount() == 0 || hist.GetSampleCount() != uint64(h.Count) {
		t.Errorf("%s%v: _count %d; want the core's %d, not 0", name, labels, hist.GetSampleCount(), h.Count)
	}
	if math.Abs(hist.GetSampleSum()-h.Sum.Seconds()) > 1e-9 {
		t.Errorf("%s%v: _sum %g; want the core's %g", name, labels, hist.GetSampleSum(), h.Sum.Seconds())
	}
	bounds := poolset.HistogramBounds()
	buckets := hist.GetBucket()
	if n := len(buckets); n != len(bounds) && n != len(bounds)+1 { // +Inf as parsed or not
		t.Errorf("%s%v: %d buckets; want %d and +Inf", name, labels, n, len(bounds))
		return
	}
	var want, prev uint64
	for i, b := range buckets {
		want += uint64(h.Counts[i])
		if i < len(bounds) && b.GetUpperBound() != bounds[i].Seconds() {
			t.Errorf("%s%v: bucket %d le=%g; want %g", name, labels, i, b.GetUpperBound(), bounds[i].Seconds())
		}
		if i == len(bounds) && !math.IsInf(b.GetUpperBound(), 1) {
			t.Errorf("%s%v: last bucket le=%g; want +Inf", name, labels, b.GetUpperBound())
		}
		if c := b.GetCumulativeCount(); c < prev || c != want {
			t.Errorf("%s%v: bucket le=%g counts %d after %d; want %d (cumulative)", name, labels, b.GetUpperBound(), c, prev, want)
		}
		prev = b.GetCumulativeCount()
	}
	if prev > hist.GetSampleCount() {
		t.Errorf("%s%v: buckets count %d, more than _count %d", name, labels, prev, hist.GetSampleCount())
	}
}
