package otelmetrics_test

import (
	"context"
	"database/sql"
	"errors"
	"log/slog"
	"math"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.uber.org/goleak"

	"github.com/poolset/poolset"
	"github.com/poolset/poolset/mysql"
	"github.com/poolset/poolset/otelmetrics"
	"github.com/poolset/poolset/poolsettest"
	"github.com/poolset/poolset/sqlite"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Attribute keys of the semantic conventions (semconv v1.43.0).
const (
	poolKey  = "db.client.connection.pool.name"
	stateKey = "db.client.connection.state"
	repoKey  = "poolset.repository"
	roleKey  = "poolset.pool.role"
)

// Instrument kinds, as the SDK's ManualReader hands them over.
const (
	upDown  = "updowncounter" // metricdata.Sum[int64], not monotonic
	counter = "counter"       // metricdata.Sum[int64], monotonic
	gaugeI  = "gauge int64"
	gaugeF  = "gauge float64"
	hist    = "histogram" // metricdata.Histogram[float64]
)

// want is what the conventions (and this package's doc) say of each
// instrument: kind, unit, and the attribute key sets its points may have.
var want = map[string]struct {
	kind, unit string
	keys       [][]string
}{
	"db.client.connection.count":            {upDown, "{connection}", [][]string{{poolKey, stateKey}, {poolKey, stateKey, repoKey}}},
	"db.client.connection.idle.max":         {upDown, "{connection}", [][]string{{poolKey}}},
	"db.client.connection.idle.min":         {upDown, "{connection}", [][]string{{poolKey}}},
	"db.client.connection.max":              {upDown, "{connection}", [][]string{{poolKey}}},
	"db.client.connection.pending_requests": {upDown, "{request}", [][]string{{poolKey, repoKey}}},
	"db.client.connection.timeouts":         {counter, "{timeout}", [][]string{{poolKey, repoKey}}},
	"db.client.connection.create_time":      {hist, "s", [][]string{{poolKey}}},
	"db.client.connection.wait_time":        {hist, "s", [][]string{{poolKey, repoKey}}},
	"db.client.connection.use_time":         {hist, "s", [][]string{{poolKey, repoKey}}},
	"poolset.pool.in_rotation":              {gaugeI, "1", [][]string{{poolKey, roleKey}}},
	"poolset.pool.replication.lag":          {gaugeF, "s", [][]string{{poolKey, roleKey}}},
}

var repos = []string{"users", "orders", "products"}

// openMariaDB opens a set on the test MariaDB: a primary of three
// connections whose acquire timeout is 500 ms, and a read pool of two on
// the same database (its health check on).
func openMariaDB(t *testing.T) *poolset.Set {
	t.Helper()
	dsn := poolsettest.MySQLDatabase(t, "otelmetrics")
	primary, err := mysql.Primary(dsn)
	if err != nil {
		t.Fatal(err)
	}
	read, err := mysql.Replica(dsn, 0)
	if err != nil {
		t.Fatal(err)
	}
	primary.MaxOpen, primary.AcquireTimeout = 3, 500*time.Millisecond
	read.MaxOpen = 2
	ctx := context.Background()
	set, err := poolset.Open(ctx, poolset.Config{Primary: primary, Reads: []poolset.PoolConfig{read}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { set.Close(ctx) })
	return set
}

func newMetrics(t *testing.T, set *poolset.Set) (*otelmetrics.Metrics, *sdkmetric.ManualReader) {
	t.Helper()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { mp.Shutdown(context.Background()) })
	m, err := otelmetrics.New(set, mp)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m, reader
}

func collect(t *testing.T, r *sdkmetric.ManualReader) map[string]metricdata.Metrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]metricdata.Metrics{}
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != otelmetrics.ScopeName {
			t.Errorf("scope %q, want %q", sm.Scope.Name, otelmetrics.ScopeName)
		}
		for _, m := range sm.Metrics {
			out[m.Name] = m
		}
	}
	return out
}

// load runs, in three goroutines per repository, 6 statements each that
// hold a connection for 10 ms: writes on the primary and reads on the read
// pool, more at once than either pool has connections, so that calls wait.
// It returns when all are done.
func load(t *testing.T, set *poolset.Set, progress chan<- struct{}) {
	ctx := context.Background()
	var wg sync.WaitGroup
	for _, name := range repos {
		h := set.Handle(name)
		for g := range 3 {
			wg.Go(func() {
				for i := range 6 {
					var err error
					if (g+i)%2 == 0 {
						_, err = h.ExecContext(ctx, "DO SLEEP(0.01)")
					} else {
						var v int
						err = h.Read().QueryRowContext(ctx, "SELECT SLEEP(0.01)").Scan(&v)
					}
					var te *poolset.AcquireTimeoutError
					if err != nil && !errors.As(err, &te) {
						t.Errorf("%s: %v", name, err)
					}
					select {
					case progress <- struct{}{}:
					default:
					}
				}
			})
		}
	}
	wg.Wait()
}

// TestConventions runs a load of three repositories on a MariaDB set and
// checks, while it runs, each instrument's name, kind, unit and attribute
// keys against the semantic conventions; then, with a known state (users
// holding two of the primary's three connections through transactions,
// orders one through a Conn, and products' call timed out), that the
// figures are the core's: the used connections by repository, their sum,
// the timeouts by repository, and the wait, use and create histograms
// bucket by bucket.
func TestConventions(t *testing.T) {
	ctx := context.Background()
	set := openMariaDB(t)
	before := set.Stats() // Open's connections came before the Observer
	_, reader := newMetrics(t, set)

	progress := make(chan struct{}, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		load(t, set, progress)
	}()
	// Collect while the load runs, once both pools have lent connections
	// and the primary has opened new ones (or once the load is over).
	for ready := false; !ready; {
		select {
		case <-progress:
			st := set.Stats()
			ready = st[0].Acquires >= 8 && st[1].Acquires >= 4 && st[0].CreateTimes.Count > before[0].CreateTimes.Count
		case <-done:
			ready = true
		}
	}
	checkShapes(t, collect(t, reader))
	<-done

	// The known state: the primary's three connections held, users 2,
	// orders 1, and products' call timed out waiting for a fourth.
	users, orders, products := set.Handle("users"), set.Handle("orders"), set.Handle("products")
	for range 2 {
		tx, err := users.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback()
	}
	conn, err := orders.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var te *poolset.AcquireTimeoutError
	if _, err := products.ExecContext(ctx, "DO 1"); !errors.As(err, &te) {
		t.Fatalf("products on a full pool: %v, want an AcquireTimeoutError", err)
	}

	got := collect(t, reader)
	checkShapes(t, got)
	stats := set.Stats()
	primary := stats[0]
	if primary.InUse != 3 {
		t.Fatalf("primary in use %d, want 3", primary.InUse)
	}
	used := points(got["db.client.connection.count"], poolKey, primary.Name, stateKey, "used")
	if used["users"] != 2 || used["orders"] != 1 || used["products"] != 0 {
		t.Errorf("used connections by repository %v, want users 2, orders 1, products 0", used)
	}
	if sum := sumOf(used); sum != int64(primary.InUse) {
		t.Errorf("used connections add up to %d, want the pool's %d", sum, primary.InUse)
	}
	idle := points(got["db.client.connection.count"], poolKey, primary.Name, stateKey, "idle")
	if idle[""] != int64(primary.Idle) {
		t.Errorf("idle %v, want %d", idle, primary.Idle)
	}

	for _, st := range stats {
		timeouts := points(got["db.client.connection.timeouts"], poolKey, st.Name)
		pending := points(got["db.client.connection.pending_requests"], poolKey, st.Name)
		waits := histograms(got["db.client.connection.wait_time"], st.Name)
		uses := histograms(got["db.client.connection.use_time"], st.Name)
		var allWaits, allUses poolset.Histogram
		for _, r := range st.Repos {
			if timeouts[r.Repo] != r.Timeouts || pending[r.Repo] != r.Waiting {
				t.Errorf("%s %s: timeouts %d, pending %d; the core counts %d, %d", st.Name, r.Repo, timeouts[r.Repo], pending[r.Repo], r.Timeouts, r.Waiting)
			}
			if r.WaitTimes.Count != r.Acquires+r.Timeouts || r.Acquires == 0 {
				t.Errorf("%s %s: %d waits, %d acquires, %d timeouts", st.Name, r.Repo, r.WaitTimes.Count, r.Acquires, r.Timeouts)
			}
			sameHistogram(t, st.Name+" "+r.Repo+" wait_time", waits[r.Repo], r.WaitTimes)
			sameHistogram(t, st.Name+" "+r.Repo+" use_time", uses[r.Repo], r.HoldTimes)
			allWaits, allUses = add(allWaits, waits[r.Repo]), add(allUses, uses[r.Repo])
		}
		if st.Name != primary.Name {
			continue // the read pool's health check may be running: no totals
		}
		if timeouts["products"] < 1 {
			t.Errorf("products: %d timeouts, want at least 1", timeouts["products"])
		}
		if sumOf(timeouts) != st.Timeouts {
			t.Errorf("timeouts add up to %d, want the pool's %d", sumOf(timeouts), st.Timeouts)
		}
		// Open's own statements (unattributed) came before the Observer.
		sameHistogram(t, "primary wait_time", add(allWaits, before[0].WaitTimes), st.WaitTimes)
		sameHistogram(t, "primary use_time", add(allUses, before[0].HoldTimes), st.HoldTimes)
		creates := histograms(got["db.client.connection.create_time"], st.Name)
		sameHistogram(t, "primary create_time", add(creates[""], before[0].CreateTimes), st.CreateTimes)
		if st.WaitTimes.Sum <= 0 {
			t.Errorf("primary: no time waited, though products timed out")
		}
	}
	for _, st := range stats {
		if g := points(got["poolset.pool.in_rotation"], poolKey, st.Name); len(g) != 1 || g[""] != map[bool]int64{true: 1, false: 0}[st.Healthy] {
			t.Errorf("%s: in_rotation %v, healthy %v", st.Name, g, st.Healthy)
		}
		if got := points(got["db.client.connection.max"], poolKey, st.Name)[""]; got != int64(st.MaxOpen) {
			t.Errorf("%s: max %d, want %d", st.Name, got, st.MaxOpen)
		}
	}
	if got := points(got["db.client.connection.idle.max"], poolKey, primary.Name)[""]; got != int64(set.Primary().Config().MaxIdle) {
		t.Errorf("idle.max %d, want %d", got, set.Primary().Config().MaxIdle)
	}
	_, lagReported := got["poolset.pool.replication.lag"]
	t.Logf("replication lag reported: %v (read pool LagKnown %v)", lagReported, stats[1].LagKnown)
	t.Logf("primary: waits %d (%s, p99 %s), holds %d, connects %d; read pool: waits %d, holds %d",
		primary.WaitTimes.Count, primary.WaitTimes.Sum, primary.WaitTimes.Quantile(0.99), primary.HoldTimes.Count,
		primary.CreateTimes.Count, stats[1].WaitTimes.Count, stats[1].HoldTimes.Count)
}

// checkShapes checks every instrument of got against want, and that each
// but the lag gauge (reported only while a lag is known) is there.
func checkShapes(t *testing.T, got map[string]metricdata.Metrics) {
	t.Helper()
	checkPresent(t, got)
	for name := range want {
		if _, ok := got[name]; !ok && name != "poolset.pool.replication.lag" {
			t.Errorf("%s: not reported", name)
		}
	}
}

// checkPresent checks the instruments of got against want.
func checkPresent(t *testing.T, got map[string]metricdata.Metrics) {
	t.Helper()
	bounds := make([]float64, 0, 20)
	for _, b := range poolset.HistogramBounds() {
		bounds = append(bounds, b.Seconds())
	}
	for name, w := range want {
		m, ok := got[name]
		if !ok {
			continue
		}
		if m.Unit != w.unit {
			t.Errorf("%s: unit %q, want %q", name, m.Unit, w.unit)
		}
		if m.Description == "" {
			t.Errorf("%s: no description", name)
		}
		var sets []attribute.Set
		kind := ""
		switch d := m.Data.(type) {
		case metricdata.Sum[int64]:
			kind = upDown
			if d.IsMonotonic {
				kind = counter
			}
			if d.Temporality != metricdata.CumulativeTemporality {
				t.Errorf("%s: temporality %v", name, d.Temporality)
			}
			for _, p := range d.DataPoints {
				sets = append(sets, p.Attributes)
			}
		case metricdata.Gauge[int64]:
			kind = gaugeI
			for _, p := range d.DataPoints {
				sets = append(sets, p.Attributes)
			}
		case metricdata.Gauge[float64]:
			kind = gaugeF
			for _, p := range d.DataPoints {
				sets = append(sets, p.Attributes)
			}
		case metricdata.Histogram[float64]:
			kind = hist
			for _, p := range d.DataPoints {
				sets = append(sets, p.Attributes)
				if !slices.Equal(p.Bounds, bounds) {
					t.Errorf("%s: bounds %v, want %v", name, p.Bounds, bounds)
				}
			}
		default:
			t.Errorf("%s: data %T", name, m.Data)
		}
		if kind != w.kind {
			t.Errorf("%s: kind %s, want %s", name, kind, w.kind)
		}
		if len(sets) == 0 {
			t.Errorf("%s: no data points", name)
		}
		for _, s := range sets {
			var keys []string
			for _, kv := range s.ToSlice() {
				keys = append(keys, string(kv.Key))
			}
			sort.Strings(keys)
			if !slices.ContainsFunc(w.keys, func(k []string) bool { return slices.Equal(k, keys) }) {
				t.Errorf("%s: attributes %v, want one of %v", name, keys, w.keys)
			}
			if v, ok := s.Value(stateKey); ok {
				_, hasRepo := s.Value(repoKey)
				if st := v.AsString(); (st == "used") != hasRepo || (st != "used" && st != "idle") {
					t.Errorf("%s: state %q with repository %v", name, st, hasRepo)
				}
			}
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("%s: not in the conventions' list", name)
		}
	}
}

// points returns the int64 points of m whose attributes have the values
// match gives (key, value, key, value...), by repository ("" for points
// without one).
func points(m metricdata.Metrics, match ...string) map[string]int64 {
	out := map[string]int64{}
	var dps []metricdata.DataPoint[int64]
	switch d := m.Data.(type) {
	case metricdata.Sum[int64]:
		dps = d.DataPoints
	case metricdata.Gauge[int64]:
		dps = d.DataPoints
	}
	for _, p := range dps {
		if matches(p.Attributes, match...) {
			r, _ := p.Attributes.Value(repoKey)
			out[r.AsString()] += p.Value
		}
	}
	return out
}

func matches(s attribute.Set, match ...string) bool {
	for i := 0; i+1 < len(match); i += 2 {
		if v, ok := s.Value(attribute.Key(match[i])); !ok || v.AsString() != match[i+1] {
			return false
		}
	}
	return true
}

// histograms returns the points of m of pool as poolset Histograms, by
// repository ("" for points without one).
func histograms(m metricdata.Metrics, pool string) map[string]poolset.Histogram {
	out := map[string]poolset.Histogram{}
	d, _ := m.Data.(metricdata.Histogram[float64])
	for _, p := range d.DataPoints {
		if !matches(p.Attributes, poolKey, pool) {
			continue
		}
		r, _ := p.Attributes.Value(repoKey)
		counts := make([]int64, len(p.BucketCounts))
		for i, c := range p.BucketCounts {
			counts[i] = int64(c)
		}
		out[r.AsString()] = poolset.Histogram{Counts: counts, Count: int64(p.Count), Sum: time.Duration(math.Round(p.Sum * 1e9))}
	}
	return out
}

func add(a, b poolset.Histogram) poolset.Histogram {
	n := max(len(a.Counts), len(b.Counts))
	out := poolset.Histogram{Counts: make([]int64, n), Count: a.Count + b.Count, Sum: a.Sum + b.Sum}
	for i := range a.Counts {
		out.Counts[i] += a.Counts[i]
	}
	for i := range b.Counts {
		out.Counts[i] += b.Counts[i]
	}
	return out
}

// sameHistogram checks that got, from OpenTelemetry, is the core's want:
// the same counts in the same buckets, and the same sum to within a
// microsecond (got's is a sum of float64 seconds).
func sameHistogram(t *testing.T, what string, got, want poolset.Histogram) {
	t.Helper()
	if got.Count != want.Count || !slices.Equal(got.Counts, want.Counts) || (got.Sum-want.Sum).Abs() > time.Microsecond {
		t.Errorf("%s: OpenTelemetry has %d (%v, sum %s), the core %d (%v, sum %s)",
			what, got.Count, got.Counts, got.Sum, want.Count, want.Counts, want.Sum)
	}
}

func sumOf(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

// TestClose checks that after Close the next collection reports none of
// the set's counts or gauges, that the histograms record no more, and
// that Close can be called again.
func TestClose(t *testing.T) {
	ctx := context.Background()
	set := openSQLite(t)
	m, reader := newMetrics(t, set)
	h := set.Handle("users")
	if _, err := h.ExecContext(ctx, "INSERT INTO t (v) VALUES ('a')"); err != nil {
		t.Fatal(err)
	}
	got := collect(t, reader)
	if n := len(points(got["db.client.connection.count"])); n == 0 {
		t.Fatal("no connection count before Close")
	}
	waits := histograms(got["db.client.connection.wait_time"], set.Primary().Config().Name)["users"]
	if waits.Count != 1 {
		t.Fatalf("users: %d waits recorded, want 1", waits.Count)
	}

	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := h.ExecContext(ctx, "INSERT INTO t (v) VALUES ('b')"); err != nil {
		t.Fatal(err)
	}
	got = collect(t, reader)
	for name, md := range got {
		switch d := md.Data.(type) {
		case metricdata.Histogram[float64]:
			if name == "db.client.connection.wait_time" {
				after := histograms(md, set.Primary().Config().Name)["users"]
				if after.Count != waits.Count {
					t.Errorf("wait_time: %d waits after Close, want still %d", after.Count, waits.Count)
				}
			}
		case metricdata.Sum[int64]:
			if len(d.DataPoints) > 0 {
				t.Errorf("%s: %d points after Close", name, len(d.DataPoints))
			}
		case metricdata.Gauge[int64]:
			if len(d.DataPoints) > 0 {
				t.Errorf("%s: %d points after Close", name, len(d.DataPoints))
			}
		case metricdata.Gauge[float64]:
			if len(d.DataPoints) > 0 {
				t.Errorf("%s: %d points after Close", name, len(d.DataPoints))
			}
		}
	}
}

// openSQLite opens a set on a fresh SQLite database with a table t.
func openSQLite(tb testing.TB) *poolset.Set {
	tb.Helper()
	ctx := context.Background()
	primary, read, err := sqlite.PoolConfigs(filepath.Join(tb.TempDir(), "db.sqlite"), 0)
	if err != nil {
		tb.Fatal(err)
	}
	set, err := poolset.Open(ctx, poolset.Config{Primary: primary, Reads: []poolset.PoolConfig{read}})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { set.Close(ctx) })
	if _, err := set.Primary().DB().ExecContext(ctx, "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)"); err != nil {
		tb.Fatal(err)
	}
	return set
}

// lagCheck is a read pool's health check that passes, with a known lag,
// until failing is set.
type lagCheck struct{ failing atomic.Bool }

func (c *lagCheck) Check(context.Context, *sql.Conn) error {
	if c.failing.Load() {
		return errors.New("test: out of rotation")
	}
	return nil
}

func (c *lagCheck) Lag() (time.Duration, bool) {
	if c.failing.Load() {
		return 0, false
	}
	return 1500 * time.Millisecond, true
}

// TestReadPoolGauges checks poolset's two gauges on a SQLite set whose read
// pool's health check reports a lag of 1.5 s: in rotation (1, both pools)
// with the lag reported for the read pool alone; then, once the check
// fails, out of rotation (0) and no lag.
func TestReadPoolGauges(t *testing.T) {
	ctx := context.Background()
	primary, read, err := sqlite.PoolConfigs(filepath.Join(t.TempDir(), "db.sqlite"), 0)
	if err != nil {
		t.Fatal(err)
	}
	check := &lagCheck{}
	read.Health, read.HealthInterval = check, 10*time.Millisecond
	set, err := poolset.Open(ctx, poolset.Config{Primary: primary, Reads: []poolset.PoolConfig{read}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close(ctx)
	_, reader := newMetrics(t, set)
	pName, rName := set.Primary().Config().Name, set.Reads()[0].Config().Name

	got := collect(t, reader)
	checkPresent(t, got)
	rotation := func(pool, role string) map[string]int64 {
		return points(got["poolset.pool.in_rotation"], poolKey, pool, roleKey, role)
	}
	if p, r := rotation(pName, "primary"), rotation(rName, "read"); p[""] != 1 || r[""] != 1 {
		t.Errorf("in_rotation: primary %v, read %v; want 1 and 1", p, r)
	}
	lag, _ := got["poolset.pool.replication.lag"].Data.(metricdata.Gauge[float64])
	if len(lag.DataPoints) != 1 || lag.DataPoints[0].Value != 1.5 || !matches(lag.DataPoints[0].Attributes, poolKey, rName, roleKey, "read") {
		t.Errorf("replication.lag: %+v, want 1.5 for %s alone", lag.DataPoints, rName)
	}

	check.failing.Store(true)
	for i := 0; set.Stats()[1].Healthy; i++ {
		if i == 500 {
			t.Fatal("the read pool stayed in rotation after 500 polls")
		}
		time.Sleep(10 * time.Millisecond)
	}
	got = collect(t, reader)
	if r := rotation(rName, "read"); r[""] != 0 || len(r) != 1 {
		t.Errorf("in_rotation of the failing read pool: %v, want 0", r)
	}
	if lag, ok := got["poolset.pool.replication.lag"].Data.(metricdata.Gauge[float64]); ok && len(lag.DataPoints) > 0 {
		t.Errorf("replication.lag while unknown: %+v", lag.DataPoints)
	}
}

// TestUnattributed checks that a connection taken through a pool's *sql.DB
// without WithRepo is reported under poolset.Unattributed, so that the
// used connections still add up to the pool's.
func TestUnattributed(t *testing.T) {
	ctx := context.Background()
	set := openSQLite(t)
	_, reader := newMetrics(t, set)
	if _, err := set.Handle("users").ExecContext(ctx, "INSERT INTO t (v) VALUES ('a')"); err != nil {
		t.Fatal(err)
	}
	tx, err := set.Primary().DB().BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, "INSERT INTO t (v) VALUES ('b')"); err != nil {
		t.Fatal(err)
	}

	got := collect(t, reader)
	checkPresent(t, got)
	st := set.Stats()[0]
	used := points(got["db.client.connection.count"], poolKey, st.Name, stateKey, "used")
	if used[poolset.Unattributed] != 1 || used["users"] != 0 || sumOf(used) != int64(st.InUse) {
		t.Errorf("used connections %v, want %s 1 and users 0, adding up to the pool's %d", used, poolset.Unattributed, st.InUse)
	}
	if waits := histograms(got["db.client.connection.wait_time"], st.Name); waits[poolset.Unattributed].Count != 1 || waits["users"].Count != 1 {
		t.Errorf("waits %v, want one for %s and one for users", waits, poolset.Unattributed)
	}
}
