// Package metrics exports a pool set's figures in the Prometheus format
// (prometheus/client_golang). The collector reads the figures at scrape
// time; it holds no state of its own. It does not own the set (it never
// opens or closes one) or the registry it is registered with. Importing it
// costs the Prometheus client; nothing else of poolset depends on it.
//
// Besides gauges and counters per pool (labels pool, role) and per
// repository (labels pool, repo), it exports three distributions as
// Prometheus histograms, in seconds, on the buckets of
// poolset.HistogramBounds (10 µs to 25 s, then +Inf):
//
//   - poolset_repo_acquire_wait_duration_seconds{pool, repo}: the wait for each
//     connection a repository was lent (from a Handle's call to the
//     checkout: microseconds from an idle pool, a connect, or the queue of
//     a full one; 0 through Pool.DB) and for each acquire that timed out; its _count is the
//     repository's acquires plus timeouts, its _sum the same figure as
//     poolset_repo_acquire_wait_seconds_total.
//   - poolset_repo_hold_duration_seconds{pool, repo}: how long each connection a
//     repository gave back was held.
//   - poolset_pool_connect_duration_seconds{pool, role}: how long the driver took to
//     open each of the pool's connections, health checks' included.
//
// The histograms are built from the core's counts at each scrape, so
// quantiles come from the server side, e.g.
//
//	histogram_quantile(0.99, sum by (repo, le) (rate(poolset_repo_acquire_wait_duration_seconds_bucket[5m])))
//
// Series stay bounded: repositories are named in code (Set.Handle), never
// from requests, and each pool or repository adds a fixed number of series
// (21 buckets per histogram).
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/poolset/poolset"
)

var (
	poolLabels = []string{"pool", "role"}
	repoLabels = []string{"pool", "repo"}

	poolOpen     = prometheus.NewDesc("poolset_pool_open_connections", "Connections open in the pool.", poolLabels, nil)
	poolInUse    = prometheus.NewDesc("poolset_pool_in_use_connections", "Connections lent to repositories.", poolLabels, nil)
	poolIdle     = prometheus.NewDesc("poolset_pool_idle_connections", "Idle connections.", poolLabels, nil)
	poolMax      = prometheus.NewDesc("poolset_pool_max_open_connections", "Most connections the pool opens.", poolLabels, nil)
	poolWaiting  = prometheus.NewDesc("poolset_pool_waiting", "Callers waiting for a connection now.", poolLabels, nil)
	poolAcquires = prometheus.NewDesc("poolset_pool_acquires_total", "Connections lent.", poolLabels, nil)
	poolTimeouts = prometheus.NewDesc("poolset_pool_acquire_timeouts_total", "Acquisitions that timed out.", poolLabels, nil)
	poolWaitSecs = prometheus.NewDesc("poolset_pool_full_wait_seconds_total", "Time waited because the pool was full (database/sql's WaitDuration).", poolLabels, nil)
	poolHealthy  = prometheus.NewDesc("poolset_pool_in_rotation", "1 while the pool takes reads (open, and its health check passing).", poolLabels, nil)
	poolLeaves   = prometheus.NewDesc("poolset_pool_rotation_leaves_total", "Times the read pool left the rotation.", poolLabels, nil)
	poolRejoins  = prometheus.NewDesc("poolset_pool_rotation_rejoins_total", "Times the read pool came back into the rotation.", poolLabels, nil)
	poolLag      = prometheus.NewDesc("poolset_pool_replication_lag_seconds", "Replication lag the read pool's health check last measured; absent while unknown.", poolLabels, nil)

	repoInUse    = prometheus.NewDesc("poolset_repo_in_use_connections", "Connections a repository holds now.", repoLabels, nil)
	repoQueries  = prometheus.NewDesc("poolset_repo_queries_total", "Statements a repository ran.", repoLabels, nil)
	repoTxs      = prometheus.NewDesc("poolset_repo_transactions_total", "Transactions a repository began.", repoLabels, nil)
	repoWaitSecs = prometheus.NewDesc("poolset_repo_acquire_wait_seconds_total", "Time a repository waited for connections.", repoLabels, nil)
	repoLongest  = prometheus.NewDesc("poolset_repo_longest_hold_seconds", "Longest time a repository held one connection.", repoLabels, nil)
	repoLeaks    = prometheus.NewDesc("poolset_repo_leaks_total", "Connections held past the leak threshold or at release.", repoLabels, nil)
	repoFallback = prometheus.NewDesc("poolset_repo_fallback_reads_total", "Reads sent to the primary because no read pool was usable.", repoLabels, nil)

	repoWaitHist = prometheus.NewDesc("poolset_repo_acquire_wait_duration_seconds", "Time each Handle call took to get its connection (0 through Pool.DB), or waited before its acquire timed out.", repoLabels, nil)
	repoHoldHist = prometheus.NewDesc("poolset_repo_hold_duration_seconds", "Time a repository held each connection it gave back.", repoLabels, nil)
	poolConnHist = prometheus.NewDesc("poolset_pool_connect_duration_seconds", "Time the driver took to open each of the pool's connections.", poolLabels, nil)
)

// bounds are poolset.HistogramBounds in seconds, the upper bounds of the
// histograms' buckets but +Inf.
var bounds = func() []float64 {
	var b []float64
	for _, d := range poolset.HistogramBounds() {
		b = append(b, d.Seconds())
	}
	return b
}()

// histogram returns h as a constant Prometheus histogram of desc: its
// non-cumulative counts summed into cumulative buckets, in seconds. The
// count is the sum of every bucket (+Inf's included), so the buckets and
// the count agree even when h was read under load.
func histogram(desc *prometheus.Desc, h poolset.Histogram, labels ...string) prometheus.Metric {
	buckets := make(map[float64]uint64, len(bounds))
	var n uint64
	for i := range len(bounds) + 1 {
		if i < len(h.Counts) {
			n += uint64(h.Counts[i])
		}
		if i < len(bounds) {
			buckets[bounds[i]] = n
		}
	}
	return prometheus.MustNewConstHistogram(desc, n, h.Sum.Seconds(), buckets, labels...)
}

// SetCollector collects a Set's pool and repository figures.
type SetCollector struct{ set *poolset.Set }

// NewSetCollector returns a collector of set's figures.
func NewSetCollector(set *poolset.Set) *SetCollector { return &SetCollector{set: set} }

// Describe implements prometheus.Collector.
func (c *SetCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{poolOpen, poolInUse, poolIdle, poolMax, poolWaiting, poolAcquires, poolTimeouts, poolWaitSecs,
		poolHealthy, poolLeaves, poolRejoins, poolLag,
		repoInUse, repoQueries, repoTxs, repoWaitSecs, repoLongest, repoLeaks, repoFallback,
		repoWaitHist, repoHoldHist, poolConnHist} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *SetCollector) Collect(ch chan<- prometheus.Metric) {
	g, n := prometheus.GaugeValue, prometheus.CounterValue
	for _, p := range c.set.Stats() {
		l := []string{p.Name, p.Role}
		ch <- prometheus.MustNewConstMetric(poolOpen, g, float64(p.Open), l...)
		ch <- prometheus.MustNewConstMetric(poolInUse, g, float64(p.InUse), l...)
		ch <- prometheus.MustNewConstMetric(poolIdle, g, float64(p.Idle), l...)
		ch <- prometheus.MustNewConstMetric(poolMax, g, float64(p.MaxOpen), l...)
		ch <- prometheus.MustNewConstMetric(poolWaiting, g, float64(p.Waiting), l...)
		ch <- prometheus.MustNewConstMetric(poolAcquires, n, float64(p.Acquires), l...)
		ch <- prometheus.MustNewConstMetric(poolTimeouts, n, float64(p.Timeouts), l...)
		ch <- prometheus.MustNewConstMetric(poolWaitSecs, n, p.WaitDuration.Seconds(), l...)
		inRotation := 0.0
		if p.Healthy {
			inRotation = 1
		}
		ch <- prometheus.MustNewConstMetric(poolHealthy, g, inRotation, l...)
		ch <- prometheus.MustNewConstMetric(poolLeaves, n, float64(p.Leaves), l...)
		ch <- prometheus.MustNewConstMetric(poolRejoins, n, float64(p.Rejoins), l...)
		if p.LagKnown {
			ch <- prometheus.MustNewConstMetric(poolLag, g, p.Lag.Seconds(), l...)
		}
		ch <- histogram(poolConnHist, p.CreateTimes, l...)
		for _, r := range p.Repos {
			rl := []string{p.Name, r.Repo}
			ch <- prometheus.MustNewConstMetric(repoInUse, g, float64(r.InUse), rl...)
			ch <- prometheus.MustNewConstMetric(repoQueries, n, float64(r.Queries), rl...)
			ch <- prometheus.MustNewConstMetric(repoTxs, n, float64(r.Txs), rl...)
			ch <- prometheus.MustNewConstMetric(repoWaitSecs, n, r.Wait.Seconds(), rl...)
			ch <- prometheus.MustNewConstMetric(repoLongest, g, r.LongestHold.Seconds(), rl...)
			ch <- prometheus.MustNewConstMetric(repoLeaks, n, float64(r.Leaks), rl...)
			ch <- prometheus.MustNewConstMetric(repoFallback, n, float64(r.Fallbacks), rl...)
			ch <- histogram(repoWaitHist, r.WaitTimes, rl...)
			ch <- histogram(repoHoldHist, r.HoldTimes, rl...)
		}
	}
}
