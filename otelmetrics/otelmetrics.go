// Package otelmetrics reports a poolset Set's pools through OpenTelemetry
// metrics, under the semantic conventions for database client connection
// pools (semconv v1.43.0, whose db.client.connection.* metrics are still
// of Development stability), with poolset's repositories as an attribute.
// It uses the OpenTelemetry metric API only: the caller brings the
// MeterProvider (an SDK's, with its readers and exporters, or a no-op one).
// It does not own the set (it never opens or closes one) or the provider.
// Package poolset itself does not import OpenTelemetry; only a program that
// imports this package pays for it.
//
// Instruments, per pool (attribute db.client.connection.pool.name, the
// pool's PoolConfig.Name):
//
//	db.client.connection.count             updowncounter {connection}  state=idle; state=used, per poolset.repository
//	db.client.connection.idle.max          updowncounter {connection}  PoolConfig.MaxIdle
//	db.client.connection.idle.min          updowncounter {connection}  always 0
//	db.client.connection.max               updowncounter {connection}  PoolConfig.MaxOpen
//	db.client.connection.pending_requests  updowncounter {request}     per poolset.repository
//	db.client.connection.timeouts          counter       {timeout}     per poolset.repository
//	db.client.connection.create_time       histogram     s
//	db.client.connection.wait_time         histogram     s             per poolset.repository
//	db.client.connection.use_time          histogram     s             per poolset.repository
//	poolset.pool.in_rotation               gauge         1             1 or 0, with poolset.pool.role
//	poolset.pool.replication.lag           gauge         s             with poolset.pool.role, while known
//
// The attribute poolset.repository is the repository a connection is
// counted against: a Handle's name, WithRepo's, or poolset.Unattributed for
// use of a pool's *sql.DB that names none. The used connections of a pool
// are split by repository, so that summing db.client.connection.count
// {state=used} by pool name gives the pool's connections in use; idle
// connections belong to no repository and carry the pool name only. Every
// repository that has used a pool has its series (0 when it holds, waits
// for or timed out on nothing), so that a series does not come and go
// with the load. The number of series thus grows with the repositories,
// which a program names in its code: not with its input.
//
// db.client.connection.idle.min is 0: database/sql keeps no minimum of idle
// connections. db.client.connection.wait_time records one wait per
// connection lent (from a Handle's call to the checkout; 0 through
// Pool.DB, whose statements poolset does not see begin), and one per
// wait that ended with the acquire timeout (for the timeout's length), as
// the pools' own RepoStats.WaitTimes do: its count per repository is the
// repository's Acquires plus its Timeouts. use_time records how long each
// connection lent was held, from its checkout to its return.
//
// The counts, maxima, pending requests, timeouts and gauges are read by one
// callback, which calls Set.Stats once per collection of the provider's
// readers. The histograms are recorded as the events happen, through an
// Observer added to the set (Set.Observe): each connection lent, given
// back or opened costs one Observer call, which records one value in one
// OpenTelemetry histogram with attributes built once per pool and
// repository (see BenchmarkObserver for its price).
package otelmetrics

import (
	"context"
	"errors"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/semconv/v1.43.0/dbconv"

	"github.com/poolset/poolset"
)

// ScopeName is the name of the Meter the instruments are created with.
const ScopeName = "github.com/poolset/poolset/otelmetrics"

// Attribute keys beyond the semantic conventions'.
const (
	// RepositoryKey is the repository a connection, a wait or a timeout
	// is counted against.
	RepositoryKey = attribute.Key("poolset.repository")
	// RoleKey is a pool's role in the set: "primary" or "read".
	RoleKey = attribute.Key("poolset.pool.role")
)

// Names of poolset's own instruments.
const (
	InRotationName = "poolset.pool.in_rotation"
	LagName        = "poolset.pool.replication.lag"
)

// An Option changes how New reports a set.
type Option func(*config)

type config struct {
	bounds []float64
}

// WithBucketBoundaries sets the explicit bucket boundaries, in seconds, of
// the three histograms. Default: those of the pools' own histograms
// (poolset.HistogramBounds: 1, 2.5, 5 steps from 10 µs to 25 s), finer
// than the SDK's default near 0, where most waits are. A View registered
// with the MeterProvider overrides either.
func WithBucketBoundaries(seconds ...float64) Option {
	return func(c *config) { c.bounds = append([]float64(nil), seconds...) }
}

// Metrics reports a Set through OpenTelemetry instruments until Close. Its
// callback may run from several readers at once, and Close may be called
// from any goroutine: it is safe for concurrent use. It starts no
// goroutine of its own: the callback runs on the reader's, the Observer on
// the statements'.
type Metrics struct {
	set     *poolset.Set
	maxIdle map[string]int64

	count, idleMax, idleMin, max, pending metric.Int64ObservableUpDownCounter
	timeouts                              metric.Int64ObservableCounter
	inRotation                            metric.Int64ObservableGauge
	lag                                   metric.Float64ObservableGauge

	reg  metric.Registration
	stop func()

	closeOnce sync.Once
	closeErr  error
}

// New creates the instruments of set on a Meter of mp named ScopeName,
// registers the callback that reads the set's stats at each collection,
// and adds to the set the Observer that records the histograms. It fails,
// having registered nothing, when mp refuses an instrument. The Metrics
// must be closed (Close) before mp is shut down or when the set is no
// longer to be reported; closing the set does not do it.
func New(set *poolset.Set, mp metric.MeterProvider, opts ...Option) (*Metrics, error) {
	if set == nil || mp == nil {
		return nil, errors.New("otelmetrics: New: nil set or MeterProvider")
	}
	cfg := config{}
	for _, b := range poolset.HistogramBounds() {
		cfg.bounds = append(cfg.bounds, b.Seconds())
	}
	for _, o := range opts {
		o(&cfg)
	}
	meter := mp.Meter(ScopeName, metric.WithInstrumentationVersion(version()))

	m := &Metrics{set: set, maxIdle: make(map[string]int64)}
	for _, p := range append([]*poolset.Pool{set.Primary()}, set.Reads()...) {
		c := p.Config()
		m.maxIdle[c.Name] = int64(c.MaxIdle)
	}

	var errs []error
	check := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	count, err := dbconv.NewClientConnectionCountObservable(meter)
	check(err)
	idleMax, err := dbconv.NewClientConnectionIdleMaxObservable(meter)
	check(err)
	idleMin, err := dbconv.NewClientConnectionIdleMinObservable(meter)
	check(err)
	maxOpen, err := dbconv.NewClientConnectionMaxObservable(meter)
	check(err)
	pending, err := dbconv.NewClientConnectionPendingRequestsObservable(meter)
	check(err)
	timeouts, err := dbconv.NewClientConnectionTimeoutsObservable(meter)
	check(err)
	m.count, m.idleMax, m.idleMin, m.max, m.pending, m.timeouts = count.Inst(), idleMax.Inst(), idleMin.Inst(), maxOpen.Inst(), pending.Inst(), timeouts.Inst()
	m.inRotation, err = meter.Int64ObservableGauge(InRotationName, metric.WithUnit("1"),
		metric.WithDescription("1 while the pool takes statements (open, and a read pool's health check passing), else 0."))
	check(err)
	m.lag, err = meter.Float64ObservableGauge(LagName, metric.WithUnit("s"),
		metric.WithDescription("The replication lag the read pool's health check last measured; absent while unknown."))
	check(err)

	bounds := metric.WithExplicitBucketBoundaries(cfg.bounds...)
	createTime, err := dbconv.NewClientConnectionCreateTime(meter, bounds)
	check(err)
	waitTime, err := dbconv.NewClientConnectionWaitTime(meter, bounds)
	check(err)
	useTime, err := dbconv.NewClientConnectionUseTime(meter, bounds)
	check(err)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}

	m.reg, err = meter.RegisterCallback(m.collect, m.count, m.idleMax, m.idleMin, m.max, m.pending, m.timeouts, m.inRotation, m.lag)
	if err != nil {
		return nil, err
	}
	m.stop = set.Observe(&observer{create: createTime.Inst(), wait: waitTime.Inst(), use: useTime.Inst()})
	return m, nil
}

// Close stops the reporting: it removes the Observer from the set and
// unregisters the callback, so that the next collections report none of
// the set's counts and gauges. The histograms keep what they recorded (an
// OpenTelemetry instrument cannot be removed) and record no more. Close is
// safe to call more than once and concurrently; each call returns the
// error, if any, of unregistering the callback.
func (m *Metrics) Close() error {
	m.closeOnce.Do(func() {
		m.stop()
		m.closeErr = m.reg.Unregister()
	})
	return m.closeErr
}

// collect reports the set's stats: the callback New registers.
func (m *Metrics) collect(_ context.Context, o metric.Observer) error {
	for _, st := range m.set.Stats() {
		poolAttr := semconv.DBClientConnectionPoolName(st.Name)
		pool := metric.WithAttributes(poolAttr)
		o.ObserveInt64(m.count, int64(st.Idle), metric.WithAttributes(poolAttr, semconv.DBClientConnectionStateIdle))
		o.ObserveInt64(m.idleMax, m.maxIdle[st.Name], pool)
		o.ObserveInt64(m.idleMin, 0, pool)
		o.ObserveInt64(m.max, int64(st.MaxOpen), pool)

		// Every repository with a connection, a waiter or a timeout is in
		// st.Repos, so theirs add up to the pool's figures.
		for _, r := range st.Repos {
			repo := RepositoryKey.String(r.Repo)
			o.ObserveInt64(m.count, r.InUse, metric.WithAttributes(poolAttr, semconv.DBClientConnectionStateUsed, repo))
			o.ObserveInt64(m.pending, r.Waiting, metric.WithAttributes(poolAttr, repo))
			o.ObserveInt64(m.timeouts, r.Timeouts, metric.WithAttributes(poolAttr, repo))
		}

		roleAttrs := metric.WithAttributes(poolAttr, RoleKey.String(st.Role))
		var inRotation int64
		if st.Healthy {
			inRotation = 1
		}
		o.ObserveInt64(m.inRotation, inRotation, roleAttrs)
		if st.LagKnown {
			o.ObserveFloat64(m.lag, st.Lag.Seconds(), roleAttrs)
		}
	}
	return nil
}

// observer records the set's events in the histograms.
type observer struct {
	create, wait, use metric.Float64Histogram

	mu     sync.Mutex // serializes changes to series
	series atomic.Pointer[map[seriesKey][]metric.RecordOption]
}

type seriesKey struct {
	pool, repo string
	noRepo     bool // create_time's series: the pool name only
}

// background is the context of every Record: the Observer is not given
// the statement's.
var background = context.Background()

func (o *observer) ObserveWait(pool, repo string, wait time.Duration, _ bool) {
	o.wait.Record(background, wait.Seconds(), o.attrs(seriesKey{pool: pool, repo: repo})...)
}

func (o *observer) ObserveHold(pool, repo string, hold time.Duration) {
	o.use.Record(background, hold.Seconds(), o.attrs(seriesKey{pool: pool, repo: repo})...)
}

func (o *observer) ObserveCreate(pool string, took time.Duration) {
	o.create.Record(background, took.Seconds(), o.attrs(seriesKey{pool: pool, noRepo: true})...)
}

// attrs returns the option that gives a Record the attributes of k: built
// on k's first event, then read with one atomic load and a map look-up.
func (o *observer) attrs(k seriesKey) []metric.RecordOption {
	if m := o.series.Load(); m != nil {
		if opt, ok := (*m)[k]; ok {
			return opt
		}
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	cur := o.series.Load()
	if cur != nil {
		if opt, ok := (*cur)[k]; ok {
			return opt
		}
	}
	kvs := []attribute.KeyValue{semconv.DBClientConnectionPoolName(k.pool)}
	if !k.noRepo {
		kvs = append(kvs, RepositoryKey.String(k.repo))
	}
	opt := []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(kvs...))}
	next := make(map[seriesKey][]metric.RecordOption, 1)
	if cur != nil {
		for kk, v := range *cur {
			next[kk] = v
		}
	}
	next[k] = opt
	o.series.Store(&next)
	return opt
}

// version is the version of module github.com/poolset/poolset in the
// running program, for the Meter's instrumentation scope.
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	if bi.Main.Path == "github.com/poolset/poolset" {
		return bi.Main.Version
	}
	for _, d := range bi.Deps {
		if d.Path == "github.com/poolset/poolset" {
			if d.Replace != nil && d.Replace.Version != "" {
				return d.Replace.Version
			}
			return d.Version
		}
	}
	return ""
}
