package main

import (
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/poolset/poolset/poolsettest"
)

// TestWorkerMetricsPromtool: the admin server's /metrics, scraped while the
// worker places orders on pools of two connections, has an acquire-wait
// histogram with observations for each repository that ran statements,
// and promtool check metrics finds nothing to say about the scrape (the
// pools' series of poolset/metrics and the worker's of workermetrics).
func TestWorkerMetricsPromtool(t *testing.T) {
	const orders = 400
	b := setupBroker(t, "nats")
	d := newShopDB(t, "poolset_t_wk_promtool")
	seedShop(t, d)
	loadOrders(t, b, orders)

	addr := freeAddr(t)
	w := startWorker(t, d, b, "--admin", addr, "--max-open", "2", "--concurrency", "8", "--group", "1")
	waitReady(t, w, addr)
	waitOrders(t, d, w, orders/4)

	client := &http.Client{Timeout: 5 * time.Second}
	code, body := httpGet(client, "http://"+addr+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics: got status %d; want 200\n%s", code, body)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v\n%s", err, body)
	}

	// Every repository that ran statements has acquire waits, in
	// cumulative buckets whose last one is the count.
	waits := map[string]*dto.Histogram{}
	for _, m := range families["poolset_repo_acquire_wait_duration_seconds"].GetMetric() {
		waits[metricLabel(m, "pool")+"/"+metricLabel(m, "repo")] = m.GetHistogram()
	}
	var used []string
	for _, m := range families["poolset_repo_queries_total"].GetMetric() {
		if m.GetCounter().GetValue() == 0 {
			continue
		}
		key := metricLabel(m, "pool") + "/" + metricLabel(m, "repo")
		used = append(used, key)
		h := waits[key]
		if h == nil || h.GetSampleCount() == 0 {
			t.Errorf("%s ran statements but has no acquire waits: %v", key, h)
			continue
		}
		var prev uint64
		for _, bk := range h.GetBucket() {
			if bk.GetCumulativeCount() < prev {
				t.Errorf("%s: bucket le=%g counts %d after %d; want cumulative", key, bk.GetUpperBound(), bk.GetCumulativeCount(), prev)
			}
			prev = bk.GetCumulativeCount()
		}
		if prev != h.GetSampleCount() {
			t.Errorf("%s: last bucket %d; want the count, %d", key, prev, h.GetSampleCount())
		}
	}
	if !strings.Contains(" "+strings.Join(used, " ")+" ", " primary/orders ") {
		t.Errorf("repositories that ran statements: %v; want primary/orders among them", used)
	}
	t.Logf("acquire waits: %s", describeWaits(waits, used))

	w.signal(syscall.SIGTERM)
	wantCleanExit(t, "worker", w)
	poolsettest.CheckMetrics(t, []byte(body)) // last: it skips t without promtool
}

// metricLabel returns the value of m's label name, or "".
func metricLabel(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// describeWaits renders the count and sum of the waits of each repository
// in used, for the log.
func describeWaits(waits map[string]*dto.Histogram, used []string) string {
	var parts []string
	for _, k := range used {
		if h := waits[k]; h != nil {
			parts = append(parts, k+" "+strconv.FormatUint(h.GetSampleCount(), 10)+" waits, "+
				time.Duration(h.GetSampleSum()*float64(time.Second)).Round(time.Microsecond).String())
		}
	}
	return strings.Join(parts, "; ")
}
