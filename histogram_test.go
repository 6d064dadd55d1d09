package poolset_test

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/poolset/poolset"
	"github.com/poolset/poolset/sqlite"
)

func TestHistogramQuantile(t *testing.T) {
	b := poolset.HistogramBounds()
	if len(b) == 0 || b[0] != 10*time.Microsecond || b[len(b)-1] != 25*time.Second {
		t.Fatalf("bounds %v; want 10µs to 25s", b)
	}
	h := poolset.Histogram{Counts: make([]int64, len(b)+1)}
	if got := h.Quantile(0.5); got != 0 {
		t.Errorf("empty: %v; want 0", got)
	}
	h.Counts[0], h.Count = 5, 5 // five waits of 0
	if got := h.Quantile(0.99); got != 0 {
		t.Errorf("durations all 0: p99 %v; want 0", got)
	}
	// 90 in (0, 10µs], 10 in (50ms, 100ms].
	h.Counts[0], h.Count, h.Sum = 90, 100, time.Second
	i100ms := -1
	for i, x := range b {
		if x == 100*time.Millisecond {
			i100ms = i
		}
	}
	h.Counts[i100ms] += 10
	if got := h.Quantile(0.5); got <= 0 || got > 10*time.Microsecond {
		t.Errorf("p50 %v; want in (0, 10µs]", got)
	}
	if got := h.Quantile(0.99); got <= 50*time.Millisecond || got > 100*time.Millisecond {
		t.Errorf("p99 %v; want in (50ms, 100ms]", got)
	}
	h.Counts[len(b)] += 100
	h.Count += 100
	h.Sum += 100 * time.Minute
	if got := h.Quantile(1); got != b[len(b)-1] {
		t.Errorf("p100 with the top bucket used: %v; want the top bound %v", got, b[len(b)-1])
	}
}

// recorder is an Observer that keeps what it is told.
type recorder struct {
	mu       sync.Mutex
	waits    map[string]int // "pool/repo"
	timeouts map[string]int
	holds    map[string]int
	creates  map[string]int
}

func newRecorder() *recorder {
	return &recorder{waits: map[string]int{}, timeouts: map[string]int{}, holds: map[string]int{}, creates: map[string]int{}}
}

func (r *recorder) ObserveWait(pool, repo string, _ time.Duration, timedOut bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if timedOut {
		r.timeouts[pool+"/"+repo]++
	}
	r.waits[pool+"/"+repo]++
}

func (r *recorder) ObserveHold(pool, repo string, _ time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.holds[pool+"/"+repo]++
}

func (r *recorder) ObserveCreate(pool string, _ time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.creates[pool]++
}

// TestWaitAndHoldHistograms checks that every lend, acquire timeout and
// give-back is in the repository's histograms and told to an observer,
// and that the pool's histograms add up its repositories'.
func TestWaitAndHoldHistograms(t *testing.T) {
	ctx := context.Background()
	s := openSQLite(t, poolset.Config{Primary: poolset.PoolConfig{AcquireTimeout: 50 * time.Millisecond}})
	rec := newRecorder()
	stop := s.Observe(rec)
	defer stop()
	orders, users := s.Handle("orders"), s.Handle("users")
	for i := range 5 {
		if _, err := orders.ExecContext(ctx, "INSERT INTO t (id, v) VALUES (?, 'x')", i); err != nil {
			t.Fatal(err)
		}
	}
	// users waits behind orders' open rows: one wait ends in a timeout,
	// one gets the connection once the rows close.
	rows, err := orders.QueryContext(ctx, "SELECT id FROM t")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := users.ExecContext(ctx, "UPDATE t SET v = 'y'"); err == nil {
		t.Fatal("exec on a full pool: no acquire timeout")
	}
	done := make(chan error)
	go func() {
		_, err := users.ExecContext(ctx, "UPDATE t SET v = 'z'")
		done <- err
	}()
	for s.Primary().Stats().Waiting == 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	rows.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	stop()
	if _, err := users.ExecContext(ctx, "UPDATE t SET v = 'after'"); err != nil { // not observed
		t.Fatal(err)
	}

	st := s.Primary().Stats()
	var sumWait, sumHold poolset.Histogram
	for _, r := range st.Repos {
		if r.WaitTimes.Count != r.Acquires+r.Timeouts {
			t.Errorf("%s: %d waits in the histogram; want acquires %d + timeouts %d", r.Repo, r.WaitTimes.Count, r.Acquires, r.Timeouts)
		}
		if r.HoldTimes.Count != r.Acquires-r.InUse {
			t.Errorf("%s: %d holds in the histogram; want %d given back", r.Repo, r.HoldTimes.Count, r.Acquires-r.InUse)
		}
		if r.Wait != r.WaitTimes.Sum || r.Hold != r.HoldTimes.Sum {
			t.Errorf("%s: totals %v/%v differ from the histograms' sums %v/%v", r.Repo, r.Wait, r.Hold, r.WaitTimes.Sum, r.HoldTimes.Sum)
		}
		sumWait.Count += r.WaitTimes.Count
		sumHold.Count += r.HoldTimes.Count
	}
	if st.WaitTimes.Count != sumWait.Count || st.HoldTimes.Count != sumHold.Count {
		t.Errorf("pool histograms %d/%d; want the repositories' %d/%d", st.WaitTimes.Count, st.HoldTimes.Count, sumWait.Count, sumHold.Count)
	}
	u := repoStats(t, st, "users")
	if u.Timeouts != 1 || u.WaitTimes.Quantile(1) < 20*time.Millisecond {
		t.Errorf("users: timeouts %d, longest wait %v; want 1 and at least 20ms", u.Timeouts, u.WaitTimes.Quantile(1))
	}
	if st.CreateTimes.Count == 0 || st.CreateTimes.Count < int64(st.Open) {
		t.Errorf("create histogram counts %d connections; %d are open", st.CreateTimes.Count, st.Open)
	}

	rec.mu.Lock()
	defer rec.mu.Unlock()
	if got := rec.timeouts["primary/users"]; got != 1 {
		t.Errorf("observer saw %d users timeouts; want 1", got)
	}
	// Everything users did until stop was observed: two waits (one timed
	// out), one hold; orders' six lends and holds.
	if rec.waits["primary/users"] != 2 || rec.holds["primary/users"] != 1 {
		t.Errorf("observer saw users waits %d, holds %d; want 2 and 1", rec.waits["primary/users"], rec.holds["primary/users"])
	}
	if rec.waits["primary/orders"] != 6 || rec.holds["primary/orders"] != 6 {
		t.Errorf("observer saw orders waits %d, holds %d; want 6 and 6", rec.waits["primary/orders"], rec.holds["primary/orders"])
	}
}

// TestWaitsUnderLoadAreTimed runs more callers than the pool has
// connections: the time its repositories' calls took to get connections
// must cover database/sql's own count of time spent queued for them (its
// queue is inside each call's wait), so no queued call is recorded as 0.
func TestWaitsUnderLoadAreTimed(t *testing.T) {
	ctx := context.Background()
	s := openSQLite(t, poolset.Config{Primary: poolset.PoolConfig{AcquireTimeout: time.Minute}})
	var wg sync.WaitGroup
	for _, repo := range []string{"users", "orders", "products", "users", "orders", "products", "users", "orders"} {
		h := s.Handle(repo)
		wg.Go(func() {
			for i := range 40 {
				if _, err := h.ExecContext(ctx, "INSERT INTO t (v) VALUES (?)", repo+string(rune('a'+i%26))); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	st := s.Primary().Stats()
	var wait time.Duration
	var timed int64
	for _, r := range st.Repos {
		wait += r.Wait
		timed += r.WaitTimes.Count - r.WaitTimes.Counts[0]
	}
	if st.WaitCount == 0 {
		t.Skip("database/sql queued no call: nothing to compare")
	}
	if wait < st.WaitDuration {
		t.Errorf("the repositories' waits add up to %v; database/sql counted %v queued in %d waits", wait, st.WaitDuration, st.WaitCount)
	}
	// A queued call may be handed a connection within 10 µs, but not most.
	if timed < st.WaitCount/2 {
		t.Errorf("%d waits above the first bucket; database/sql queued %d calls", timed, st.WaitCount)
	}
}

// TestHealthReasonRedacted: a health check whose error quotes a DSN with
// its password must not put the password in the log or the stats.
func TestHealthReasonRedacted(t *testing.T) {
	ctx := context.Background()
	log, buf := newLogger()
	primary, read, err := sqlite.PoolConfigs(filepath.Join(t.TempDir(), "test.db"), 2)
	if err != nil {
		t.Fatal(err)
	}
	read.Health = poolset.HealthFunc(func(context.Context, *sql.Conn) error {
		return errors.New("dial shop:s3cretpw@tcp(127.0.0.1:3307)/shop: connection refused")
	})
	s, err := poolset.Open(ctx, poolset.Config{Primary: primary, Reads: []poolset.PoolConfig{read}, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	st := s.Reads()[0].Stats()
	if st.Healthy || st.Unhealthy == "" {
		t.Fatalf("read pool healthy %v, reason %q; want out of the rotation with a reason", st.Healthy, st.Unhealthy)
	}
	for what, text := range map[string]string{"reason": st.Unhealthy, "tree": s.Tree(), "log": buf.String()} {
		if strings.Contains(text, "s3cretpw") {
			t.Errorf("the %s shows the password: %s", what, text)
		}
	}
	if !strings.Contains(st.Unhealthy, "connection refused") {
		t.Errorf("reason %q lost the error", st.Unhealthy)
	}
}

// TestReposAddUpToThePool: a repository that holds a connection is listed
// even before any of its statements ran (here a statement prepared on a
// *sql.Conn of the pool's *sql.DB), so the repositories' in-use figures
// add up to the pool's.
func TestReposAddUpToThePool(t *testing.T) {
	ctx := context.Background()
	s := openSQLite(t, poolset.Config{})
	c, err := s.Primary().DB().Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	stmt, err := c.PrepareContext(poolset.WithRepo(ctx, "reports"), "SELECT v FROM t")
	if err != nil {
		t.Fatal(err)
	}
	defer stmt.Close()
	st := s.Primary().Stats()
	var inUse int64
	for _, r := range st.Repos {
		inUse += r.InUse
	}
	if st.InUse != 1 || inUse != int64(st.InUse) {
		t.Errorf("pool in use %d, its repositories' %d (%+v); want 1 and 1", st.InUse, inUse, st.Repos)
	}
}
