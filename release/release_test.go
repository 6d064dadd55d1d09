package release_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/poolset/poolset/release"
)

// recorder records the order in which steps ran. It is safe for concurrent
// use.
type recorder struct {
	mu    sync.Mutex
	names []string
}

// step returns a Func that records name and returns err.
func (r *recorder) step(name string, err error) release.Func {
	return func(context.Context) error {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.names = append(r.names, name)
		return err
	}
}

func (r *recorder) ran() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.names)
}

// hang returns a Func that ignores its context and blocks until the test
// ends, so no goroutine outlives the test. called, if not nil, receives a
// value when the Func starts.
func hang(t *testing.T, called chan<- string, name string) release.Func {
	t.Helper()
	unblock := make(chan struct{})
	t.Cleanup(func() { close(unblock) })
	return func(context.Context) error {
		if called != nil {
			called <- name
		}
		<-unblock
		return nil
	}
}

// releaseWithin calls s.Release(ctx) and returns its result and how long it
// took. It fails the test at once if Release has not returned after limit,
// rather than letting a broken Release hang the test binary.
func releaseWithin(t *testing.T, s *release.Stack, ctx context.Context, limit time.Duration) (*release.Report, time.Duration, error) {
	t.Helper()
	type result struct {
		r   *release.Report
		err error
	}
	done := make(chan result, 1)
	start := time.Now()
	go func() {
		r, err := s.Release(ctx)
		done <- result{r, err}
	}()
	select {
	case res := <-done:
		return res.r, time.Since(start), res.err
	case <-time.After(limit):
		t.Fatalf("Release has not returned after %v", limit)
		panic("unreachable")
	}
}

func outcomes(r *release.Report) []string {
	var out []string
	for _, st := range r.Steps {
		out = append(out, st.Name+"="+string(st.Outcome))
	}
	return out
}

func TestReleaseLIFO(t *testing.T) {
	var (
		s   release.Stack
		rec recorder
	)
	for _, name := range []string{"first", "second", "third", "fourth"} {
		s.Add(name, rec.step(name, nil))
	}
	if got, want := s.Len(), 4; got != want {
		t.Fatalf("Len() = %d before Release; want %d", got, want)
	}

	r, err := s.Release(context.Background())
	if err != nil {
		t.Fatalf("Release: got error %v; want nil", err)
	}
	want := []string{"fourth", "third", "second", "first"}
	if got := rec.ran(); !slices.Equal(got, want) {
		t.Errorf("steps ran in order %q; want %q", got, want)
	}
	var reported []string
	for _, st := range r.Steps {
		reported = append(reported, st.Name)
	}
	if !slices.Equal(reported, want) {
		t.Errorf("report lists steps %q; want %q", reported, want)
	}
	if got := s.Len(); got != 0 {
		t.Errorf("Len() = %d after Release; want 0", got)
	}
}

func TestReleaseFailingStepContinues(t *testing.T) {
	errA := errors.New("close a: connection reset")
	errC := errors.New("close c: broken pipe")
	var (
		s   release.Stack
		rec recorder
	)
	s.Add("a", rec.step("a", errA))
	s.Add("b", rec.step("b", nil))
	s.Add("c", rec.step("c", errC))
	s.Add("d", rec.step("d", nil))

	r, err := s.Release(context.Background())
	if got, want := rec.ran(), []string{"d", "c", "b", "a"}; !slices.Equal(got, want) {
		t.Errorf("steps ran %q; want %q", got, want)
	}
	if got, want := outcomes(r), []string{"d=ok", "c=failed", "b=ok", "a=failed"}; !slices.Equal(got, want) {
		t.Errorf("outcomes %q; want %q", got, want)
	}
	for _, target := range []error{errA, errC} {
		if !errors.Is(err, target) {
			t.Errorf("errors.Is(err, %q) = false; want true (err: %v)", target, err)
		}
	}
	for _, want := range []string{
		`release: step "c": close c: broken pipe`,
		`release: step "a": close a: connection reset`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	if got, want := len(r.Failed()), 2; got != want {
		t.Errorf("len(Failed()) = %d; want %d", got, want)
	}
	if got := r.Err(); got == nil || got.Error() != err.Error() {
		t.Errorf("Report.Err() = %v; want %v", got, err)
	}
}

func TestReleasePanickingStep(t *testing.T) {
	sentinel := errors.New("sentinel")
	tests := []struct {
		name    string
		value   any
		wantMsg string
	}{
		{"string", "boom", `release: step "bad": panic: boom`},
		{"error", sentinel, `release: step "bad": panic: sentinel`},
		{"int", 42, `release: step "bad": panic: 42`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var (
				s   release.Stack
				rec recorder
			)
			s.Add("after", rec.step("after", nil))
			s.Add("bad", func(context.Context) error { panic(tt.value) })
			s.Add("before", rec.step("before", nil))

			r, err := s.Release(context.Background())
			if got, want := rec.ran(), []string{"before", "after"}; !slices.Equal(got, want) {
				t.Errorf("steps ran %q; want %q", got, want)
			}
			if got, want := outcomes(r), []string{"before=ok", "bad=failed", "after=ok"}; !slices.Equal(got, want) {
				t.Errorf("outcomes %q; want %q", got, want)
			}
			if err == nil || err.Error() != tt.wantMsg {
				t.Errorf("got error %v; want %q", err, tt.wantMsg)
			}
			if e, ok := tt.value.(error); ok && !errors.Is(err, e) {
				t.Errorf("errors.Is(err, %v) = false; want true", e)
			}
		})
	}
}

func TestReleaseStepTimeout(t *testing.T) {
	var (
		s   release.Stack
		rec recorder
	)
	s.Add("after", rec.step("after", nil))
	s.AddTimeout("stuck", 100*time.Millisecond, hang(t, nil, "stuck"))
	s.Add("before", rec.step("before", nil))

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, elapsed, err := releaseWithin(t, &s, ctx, 20*time.Second)
	if elapsed >= release.DefaultTimeout {
		t.Errorf("Release took %v; want it to return before the %v default timeout", elapsed, release.DefaultTimeout)
	}
	if got, want := rec.ran(), []string{"before", "after"}; !slices.Equal(got, want) {
		t.Errorf("steps ran %q; want %q", got, want)
	}
	if got, want := outcomes(r), []string{"before=ok", "stuck=timeout", "after=ok"}; !slices.Equal(got, want) {
		t.Errorf("outcomes %q; want %q", got, want)
	}
	stuck := r.Steps[1]
	if stuck.Timeout != 100*time.Millisecond {
		t.Errorf("stuck step Timeout = %v; want 100ms", stuck.Timeout)
	}
	if stuck.Duration < 100*time.Millisecond {
		t.Errorf("stuck step Duration = %v; want at least its 100ms timeout", stuck.Duration)
	}
	if want := `release: step "stuck": timed out after 100ms`; err == nil || err.Error() != want {
		t.Errorf("got error %v; want %q", err, want)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("errors.Is(err, context.DeadlineExceeded) = false; want true")
	}
}

func TestReleaseOverallDeadline(t *testing.T) {
	const deadline = 300 * time.Millisecond
	names := []string{"a", "b", "c", "d"}

	tests := []struct {
		name string
		// step returns the Func registered under name.
		step func(t *testing.T, called chan<- string, name string) release.Func
	}{
		{"steps ignore ctx", hang},
		{"steps honour ctx", func(t *testing.T, called chan<- string, name string) release.Func {
			return func(ctx context.Context) error {
				called <- name
				<-ctx.Done()
				return ctx.Err()
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s release.Stack
			called := make(chan string, len(names))
			for _, name := range names {
				// Each step's own timeout is far longer than the deadline.
				s.AddTimeout(name, time.Minute, tt.step(t, called, name))
			}

			ctx, cancel := context.WithTimeout(context.Background(), deadline)
			defer cancel()
			r, elapsed, err := releaseWithin(t, &s, ctx, 20*time.Second)
			if limit := deadline + 2*time.Second; elapsed > limit {
				t.Errorf("Release took %v; want at most %v with a %v deadline", elapsed, limit, deadline)
			}
			if got := len(r.Steps); got != len(names) {
				t.Fatalf("report has %d steps; want %d (no step skipped)", got, len(names))
			}
			for _, st := range r.Steps {
				if st.Outcome == release.OK {
					t.Errorf("step %q outcome %q; want not ok", st.Name, st.Outcome)
				}
			}
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("errors.Is(err, context.DeadlineExceeded) = false; want true (err: %v)", err)
			}

			// Every Func was started; the last ones may begin running
			// just after Release returns.
			var got []string
			timeout := time.After(10 * time.Second)
			for range names {
				select {
				case name := <-called:
					got = append(got, name)
				case <-timeout:
					t.Fatalf("steps called %q; want all of %q", got, names)
				}
			}
			slices.Sort(got)
			if !slices.Equal(got, names) {
				t.Errorf("steps called %q; want %q", got, names)
			}
		})
	}
}

func TestReleaseCanceledContext(t *testing.T) {
	var (
		s   release.Stack
		rec recorder
	)
	s.Add("a", rec.step("a", nil))
	s.Add("b", rec.step("b", nil))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()

	r, _ := s.Release(ctx)
	if got := len(r.Steps); got != 2 {
		t.Errorf("report has %d steps; want 2", got)
	}
	for _, st := range r.Steps {
		if st.Outcome == release.TimedOut && !errors.Is(st.Err, context.Canceled) {
			t.Errorf("step %q error %v; want it to wrap context.Canceled", st.Name, st.Err)
		}
	}
}

func TestReleaseTwice(t *testing.T) {
	var (
		s     release.Stack
		calls atomic.Int32
	)
	s.Add("a", func(context.Context) error { calls.Add(1); return errors.New("a failed") })
	if s.Released() {
		t.Fatalf("Released() = true before Release; want false")
	}

	r1, err1 := s.Release(context.Background())
	if !s.Released() {
		t.Errorf("Released() = false after Release; want true")
	}
	r2, err2 := s.Release(context.Background())

	if r1 != r2 {
		t.Errorf("second Release returned report %p; want the first, %p", r2, r1)
	}
	if err1 == nil || err1 != err2 {
		t.Errorf("second Release returned error %v; want the first, %v", err2, err1)
	}
	if got := calls.Load(); got != 1 {
		t.Errorf("step ran %d times; want 1", got)
	}
}

func TestReleaseConcurrent(t *testing.T) {
	const (
		callers = 8
		steps   = 20
	)
	var (
		s      release.Stack
		counts [steps]atomic.Int32
	)
	for i := range steps {
		s.Add(fmt.Sprint("step-", i), func(context.Context) error {
			counts[i].Add(1)
			time.Sleep(time.Millisecond)
			return nil
		})
	}

	reports := make([]*release.Report, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() {
			reports[i], _ = s.Release(context.Background())
		})
	}
	wg.Wait()

	for i := range steps {
		if got := counts[i].Load(); got != 1 {
			t.Errorf("step-%d ran %d times; want 1", i, got)
		}
	}
	for i, r := range reports {
		if r != reports[0] {
			t.Errorf("caller %d got report %p; want %p, the same as caller 0", i, r, reports[0])
		}
	}
	if got := len(reports[0].Steps); got != steps {
		t.Errorf("report has %d steps; want %d", got, steps)
	}
}

// TestAddDuringRelease checks that a step added while Release runs is run
// exactly once: by Release if it was registered in time, at once otherwise.
func TestAddDuringRelease(t *testing.T) {
	const adders = 50
	var (
		s      release.Stack
		counts [adders]atomic.Int32
	)
	s.Add("slow", func(context.Context) error { time.Sleep(20 * time.Millisecond); return nil })

	var wg sync.WaitGroup
	wg.Go(func() { s.Release(context.Background()) })
	for i := range adders {
		wg.Go(func() {
			s.Add(fmt.Sprint("late-", i), func(context.Context) error {
				counts[i].Add(1)
				return nil
			})
		})
	}
	wg.Wait()

	for i := range adders {
		if got := counts[i].Load(); got != 1 {
			t.Errorf("late-%d ran %d times; want 1", i, got)
		}
	}
}

func TestAddAfterRelease(t *testing.T) {
	var s release.Stack
	r, err := s.Release(context.Background())
	if err != nil {
		t.Fatalf("Release: got error %v; want nil", err)
	}

	t.Run("Add", func(t *testing.T) {
		var ran atomic.Bool
		s.Add("late", func(context.Context) error { ran.Store(true); return errors.New("ignored") })
		if !ran.Load() {
			t.Errorf("step added after Release did not run before Add returned")
		}
	})
	t.Run("AddCloser", func(t *testing.T) {
		c := &closer{}
		s.AddCloser("late closer", c)
		if got := c.calls.Load(); got != 1 {
			t.Errorf("Close called %d times before AddCloser returned; want 1", got)
		}
	})
	t.Run("AddTimeout bounded", func(t *testing.T) {
		ctxDone := make(chan struct{})
		start := time.Now()
		s.AddTimeout("late stuck", 100*time.Millisecond, func(ctx context.Context) error {
			<-ctx.Done()
			close(ctxDone)
			return ctx.Err()
		})
		if elapsed := time.Since(start); elapsed >= release.DefaultTimeout {
			t.Errorf("AddTimeout took %v; want it to return before the %v default timeout", elapsed, release.DefaultTimeout)
		}
		// AddTimeout may return before the step sees its context done.
		select {
		case <-ctxDone:
		case <-time.After(10 * time.Second):
			t.Errorf("late step's context was not done 10s after its 100ms timeout")
		}
	})

	if got := s.Len(); got != 0 {
		t.Errorf("Len() = %d after late adds; want 0", got)
	}
	if got := len(r.Steps); got != 0 {
		t.Errorf("report has %d steps after late adds; want 0 (late steps are not reported)", got)
	}
	r2, _ := s.Release(context.Background())
	if r2 != r {
		t.Errorf("Release after late adds returned report %p; want %p", r2, r)
	}
}

func TestZeroStack(t *testing.T) {
	var s release.Stack
	if got := s.Len(); got != 0 {
		t.Errorf("Len() = %d; want 0", got)
	}
	r, err := s.Release(context.Background())
	if err != nil {
		t.Errorf("Release: got error %v; want nil", err)
	}
	if r == nil {
		t.Fatal("Release returned a nil report; want an empty one")
	}
	if got := len(r.Steps); got != 0 {
		t.Errorf("report has %d steps; want 0", got)
	}
	if got, want := r.String(), "released 0 steps in"; !strings.Contains(got, want) {
		t.Errorf("String() = %q; want it to contain %q", got, want)
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatalf("json.Marshal: %v", err)
	}
	if got, want := string(b), `"steps":[]`; !strings.Contains(got, want) {
		t.Errorf("JSON %s; want it to contain %s", got, want)
	}
}

func TestAddIgnoresNil(t *testing.T) {
	var s release.Stack
	s.Add("nil func", nil)
	s.AddTimeout("nil func", time.Second, nil)
	s.AddCloser("nil closer", nil)
	if got := s.Len(); got != 0 {
		t.Errorf("Len() = %d after adding nils; want 0", got)
	}
	if _, err := s.Release(context.Background()); err != nil {
		t.Errorf("Release: got error %v; want nil", err)
	}
}

func TestAddTimeoutDefault(t *testing.T) {
	tests := []struct {
		name    string
		add     func(s *release.Stack, fn release.Func)
		timeout time.Duration
	}{
		{"Add", func(s *release.Stack, fn release.Func) { s.Add("x", fn) }, release.DefaultTimeout},
		{"zero", func(s *release.Stack, fn release.Func) { s.AddTimeout("x", 0, fn) }, release.DefaultTimeout},
		{"negative", func(s *release.Stack, fn release.Func) { s.AddTimeout("x", -time.Second, fn) }, release.DefaultTimeout},
		{"set", func(s *release.Stack, fn release.Func) { s.AddTimeout("x", 2*time.Second, fn) }, 2 * time.Second},
		{"AddCloser", func(s *release.Stack, _ release.Func) { s.AddCloser("x", &closer{}) }, release.DefaultTimeout},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var (
				s        release.Stack
				deadline time.Time
			)
			tt.add(&s, func(ctx context.Context) error {
				deadline, _ = ctx.Deadline()
				return nil
			})
			start := time.Now()
			r, _ := s.Release(context.Background())
			if got := r.Steps[0].Timeout; got != tt.timeout {
				t.Errorf("Step.Timeout = %v; want %v", got, tt.timeout)
			}
			if !deadline.IsZero() {
				if d := deadline.Sub(start); d > tt.timeout+time.Second || d < tt.timeout-time.Second {
					t.Errorf("step context deadline %v after start; want about %v", d, tt.timeout)
				}
			}
		})
	}
}

type closer struct {
	calls atomic.Int32
	err   error
}

func (c *closer) Close() error {
	c.calls.Add(1)
	return c.err
}

func TestAddCloser(t *testing.T) {
	errClose := errors.New("close failed")
	var s release.Stack
	ok, bad := &closer{}, &closer{err: errClose}
	s.AddCloser("ok", ok)
	s.AddCloser("bad", bad)

	r, err := s.Release(context.Background())
	if ok.calls.Load() != 1 || bad.calls.Load() != 1 {
		t.Errorf("Close calls: ok %d, bad %d; want 1 each", ok.calls.Load(), bad.calls.Load())
	}
	if !errors.Is(err, errClose) {
		t.Errorf("errors.Is(err, errClose) = false; want true (err: %v)", err)
	}
	if got, want := outcomes(r), []string{"bad=failed", "ok=ok"}; !slices.Equal(got, want) {
		t.Errorf("outcomes %q; want %q", got, want)
	}
}
