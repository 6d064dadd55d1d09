package release

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"time"
)

// DefaultTimeout is the timeout of a step added without one.
const DefaultTimeout = 5 * time.Second

// Func releases one resource. It should return promptly once ctx is done.
//
// A Func runs in a goroutine of its own. If it is still running when its
// timeout or the release deadline passes, it is reported as timed out and
// left running in the background until it returns; Release does not wait for
// it.
type Func func(ctx context.Context) error

// Stack is an ordered set of release steps. The zero value is ready to use.
// A Stack is safe for concurrent use by multiple goroutines.
//
// A Stack is released once: after [Stack.Release] has started, steps added to
// it are run at once (see [Stack.AddTimeout]).
type Stack struct {
	mu      sync.Mutex
	steps   []entry
	started bool
	done    chan struct{} // closed when the first Release returns

	// report and err are written once, before done is closed, and only
	// read after it is closed.
	report *Report
	err    error
}

// entry is a registered, not yet run step.
type entry struct {
	name    string
	timeout time.Duration
	fn      Func
}

// Add registers fn, under name, to be run by [Stack.Release] with a timeout of
// [DefaultTimeout]. It is AddTimeout(name, DefaultTimeout, fn).
func (s *Stack) Add(name string, fn Func) {
	s.AddTimeout(name, DefaultTimeout, fn)
}

// AddTimeout registers fn, under name, to be run by [Stack.Release] with the
// given timeout. A timeout <= 0 means [DefaultTimeout]. A nil fn is ignored.
//
// If Release has already started, nothing is registered: fn is run at once,
// before AddTimeout returns, with a context derived from
// context.Background() that is done after timeout. Its outcome is not part of
// any [Report] and its error is discarded. This way a resource acquired while
// the release is under way is released at once instead of leaking.
// AddTimeout then blocks for at most timeout (fn may keep running in the
// background after that, as in Release).
func (s *Stack) AddTimeout(name string, timeout time.Duration, fn Func) {
	if fn == nil {
		return
	}
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	e := entry{name: name, timeout: timeout, fn: fn}
	s.mu.Lock()
	if !s.started {
		s.steps = append(s.steps, e)
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	var none time.Duration
	run(context.Background(), e, &none)
}

// AddCloser registers c.Close, under name, with a timeout of
// [DefaultTimeout]. Close takes no context, so a Close that blocks is left
// running in the background once the timeout passes. A nil c is ignored.
func (s *Stack) AddCloser(name string, c io.Closer) {
	if c == nil {
		return
	}
	s.Add(name, func(context.Context) error { return c.Close() })
}

// Len returns the number of steps registered and not yet run. It is 0 once
// Release has started.
func (s *Stack) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.steps)
}

// Released reports whether Release has started. Once it returns true, it
// always does.
func (s *Stack) Released() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.started
}

// Release runs the registered steps one at a time, last registered first,
// and returns a report of what happened. The error is the errors.Join of the
// errors of the steps that failed or timed out (see [Report.Err]); it is nil
// when every step succeeded.
//
// Each step runs in its own goroutine with a context that is done after the
// step's timeout or when ctx is done, whichever comes first. A step that
// returns an error or panics is recorded as [Failed]; a step still running
// when its context is done is recorded as [TimedOut] and left running in the
// background, and Release moves on to the next step at once. No outcome stops
// the steps after it.
//
// Release never skips a step: once ctx is done, each remaining step is still
// started, with a context that is already done, and recorded as timed out
// unless it returns within a grace of 250 ms shared by all such steps (time
// for a pool to say goodbye to its idle connections). So Release returns at
// most 250 ms after ctx's deadline however the steps behave, and by then
// every Func has been started. Without
// a deadline on ctx, Release blocks for at most the sum of the step timeouts.
//
// Release is idempotent: the second and later calls, and calls made
// concurrently with the first, block until the first call returns and then
// return the same *Report and error, whatever ctx they were given. The
// report is never nil. ctx must not be nil.
func (s *Stack) Release(ctx context.Context) (*Report, error) {
	if ctx == nil {
		panic("release: nil Context")
	}
	s.mu.Lock()
	if s.started {
		done := s.done
		s.mu.Unlock()
		<-done
		return s.report, s.err
	}
	s.started = true
	s.done = make(chan struct{})
	entries := s.steps
	s.steps = nil
	s.mu.Unlock()

	start := time.Now()
	r := &Report{Steps: make([]Step, 0, len(entries))}
	grace := doneGrace
	for i := len(entries) - 1; i >= 0; i-- {
		r.Steps = append(r.Steps, run(ctx, entries[i], &grace))
	}
	r.Duration = time.Since(start)

	s.report, s.err = r, r.Err()
	close(s.done)
	return s.report, s.err
}

// doneGrace is how long, in all, a Release whose ctx is done waits for
// steps that were started with a done context to return. A step that honours
// its context still does what costs next to nothing before it returns (a
// pool says goodbye to its idle connections, and lists and cuts what was
// held), and a release given a context that was already cancelled, as a
// service's signal context often is, should not cut those connections.
const doneGrace = 250 * time.Millisecond

// errStepTimeout is the cause of a step context that passed its own timeout,
// as opposed to the release context being done.
var errStepTimeout = errors.New("release: step timeout")

// run runs one step within ctx and its timeout and returns its record. It
// returns once the step has returned or its context is done; in the second
// case the step's goroutine ends when e.fn returns.
//
// When ctx (not the step's own timeout) ended the step's context, run waits
// a little longer for the step to return, taking the time from grace.
func run(ctx context.Context, e entry, grace *time.Duration) Step {
	st := Step{Name: e.name, Timeout: e.timeout}
	start := time.Now()
	stepCtx, cancel := context.WithTimeoutCause(ctx, e.timeout, errStepTimeout)
	defer cancel()

	res := make(chan error, 1) // buffered: the goroutine never blocks on send
	go func() {
		err := errGoexit
		defer func() {
			if v := recover(); v != nil {
				err = panicError(v)
			}
			res <- err
		}()
		err = e.fn(stepCtx)
	}()

	var (
		err      error
		returned bool
	)
	select {
	case err = <-res:
		returned = true
	case <-stepCtx.Done():
		// The step may have returned at the same moment, or return at once
		// given a done context (when ctx was done before the step started):
		// let it run, then take its result if it is there, without waiting.
		runtime.Gosched()
		select {
		case err = <-res:
			returned = true
		default:
		}
		if !returned && ctx.Err() != nil && *grace > 0 {
			waited := time.Now()
			t := time.NewTimer(*grace)
			select {
			case err = <-res:
				returned = true
			case <-t.C:
			}
			t.Stop()
			*grace -= time.Since(waited)
		}
	}
	st.Duration = time.Since(start)

	switch {
	case !returned:
		st.Outcome = TimedOut
		st.Err = newTimeoutError(ctx, stepCtx, e.timeout)
	case err != nil:
		st.Outcome = Failed
		st.Err = err
	default:
		st.Outcome = OK
	}
	return st
}

// errGoexit is the error of a step whose Func called runtime.Goexit (for
// example through testing.T.FailNow) instead of returning.
var errGoexit = errors.New("exited without returning")

// panicError returns the error recorded for a step that panicked with v. If v
// is an error, it is wrapped, so errors.Is and errors.As see it.
func panicError(v any) error {
	if err, ok := v.(error); ok {
		return fmt.Errorf("panic: %w", err)
	}
	return fmt.Errorf("panic: %v", v)
}

// timeoutError is the error of a step that was still running when its
// context was done. It unwraps to the cause of the context being done
// (usually context.DeadlineExceeded).
type timeoutError struct {
	own     bool          // the step's own timeout passed
	timeout time.Duration // the step's own timeout
	cause   error
}

func newTimeoutError(ctx, stepCtx context.Context, timeout time.Duration) error {
	if cause := context.Cause(stepCtx); cause == errStepTimeout {
		return &timeoutError{own: true, timeout: timeout, cause: context.DeadlineExceeded}
	}
	return &timeoutError{timeout: timeout, cause: context.Cause(ctx)}
}

func (e *timeoutError) Error() string {
	if e.own {
		return "timed out after " + e.timeout.String()
	}
	return "timed out: " + e.cause.Error()
}

func (e *timeoutError) Unwrap() error { return e.cause }
