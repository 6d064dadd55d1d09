// Package workermetrics exports the shop worker's counters in the
// Prometheus format. The collector reads them at scrape time; it holds no
// state of its own, and serves nothing (the command's admin server does).
// A pool set's figures are poolset/metrics' job.
package workermetrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/poolset/poolset/examples/shop/worker"
)

var (
	msgs     = prometheus.NewDesc("poolset_worker_messages_total", "Messages by outcome.", []string{"outcome"}, nil)
	received = prometheus.NewDesc("poolset_worker_received_total", "Messages received.", nil, nil)
	inFlight = prometheus.NewDesc("poolset_worker_in_flight", "Messages being processed now.", nil, nil)
	ready    = prometheus.NewDesc("poolset_worker_ready", "1 while the worker takes messages.", nil, nil)
	held     = prometheus.NewDesc("poolset_worker_held", "Messages in flight held because the database does not answer.", nil, nil)
	outages  = prometheus.NewDesc("poolset_worker_db_outages_total", "Times the database stopped answering.", nil, nil)
	outageS  = prometheus.NewDesc("poolset_worker_db_outage_seconds_total", "Time the database did not answer.", nil, nil)
)

// Collector collects a Worker's counters.
type Collector struct{ w *worker.Worker }

// New returns a collector of w's counters.
func New(w *worker.Worker) *Collector { return &Collector{w: w} }

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- msgs
	ch <- received
	ch <- inFlight
	ch <- ready
	ch <- held
	ch <- outages
	ch <- outageS
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	s := c.w.Stats()
	n := prometheus.CounterValue
	for outcome, v := range map[string]int64{
		"accepted": s.Accepted, "rejected": s.Rejected, "duplicate": s.Duplicates, "registered": s.Registered,
		"naked": s.Naked, "dead_lettered": s.DeadLettered, "abandoned": s.Abandoned, "settle_error": s.SettleErrors,
	} {
		ch <- prometheus.MustNewConstMetric(msgs, n, float64(v), outcome)
	}
	ch <- prometheus.MustNewConstMetric(received, n, float64(s.Received))
	ch <- prometheus.MustNewConstMetric(inFlight, prometheus.GaugeValue, float64(s.InFlight))
	r := 0.0
	if c.w.Ready() {
		r = 1
	}
	ch <- prometheus.MustNewConstMetric(ready, prometheus.GaugeValue, r)
	ch <- prometheus.MustNewConstMetric(held, prometheus.GaugeValue, float64(s.Held))
	ch <- prometheus.MustNewConstMetric(outages, n, float64(s.Outages))
	ch <- prometheus.MustNewConstMetric(outageS, n, s.OutageTime.Seconds())
}
