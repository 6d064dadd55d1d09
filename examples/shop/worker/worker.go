package worker

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/poolset/poolset"
)

// Worker processes messages from a Source into a Store. Its methods are
// safe for concurrent use; Run is called once.
type Worker struct {
	store Store
	src   Source
	cfg   Config
	log   *slog.Logger

	ready    atomic.Bool
	skip     chan struct{}
	skipOnce sync.Once

	figs       figures
	out        *outage
	progressAt atomic.Int64  // unix nanos of the last settle of any kind, or of Run's start
	cut        atomic.Bool   // the drain was cut short: no statement begins
	freed      chan struct{} // signalled when places in flight are freed
	settleLog  *burstLog

	groupSlots chan struct{} // one per group transaction in flight
	slots      chan struct{} // one per single-order transaction in flight

	pendMu  sync.Mutex
	pending map[Delivery]time.Time // taken and not yet settled, with when it was taken
}

// New returns a worker that places the orders and registrations it takes
// from src into store. It starts nothing: Run does.
func New(store Store, src Source, cfg Config) *Worker {
	cfg.setDefaults()
	return &Worker{
		store: store, src: src, cfg: cfg, log: cfg.Logger,
		skip: make(chan struct{}), freed: make(chan struct{}, 1),
		out:        &outage{ping: store.Ping, log: cfg.Logger},
		settleLog:  newBurstLog(cfg.Logger),
		groupSlots: make(chan struct{}, cfg.GroupConcurrency), slots: make(chan struct{}, cfg.Concurrency),
		pending: make(map[Delivery]time.Time),
	}
}

// Ready reports whether the worker is taking messages: true from Run's
// start until its ctx is done, except while the database does not answer.
func (w *Worker) Ready() bool { return w.ready.Load() && w.out.current() == nil }

// DatabaseDown reports whether the database is not answering now, so that
// the worker holds its messages and fetches none.
func (w *Worker) DatabaseDown() bool { return w.out.current() != nil }

// SkipDrain ends the drain at once (the second signal): what is in flight
// is nak'ed and counted as abandoned. It is idempotent, and may be called
// before Run's ctx is done, to take effect when the drain begins.
func (w *Worker) SkipDrain() { w.skipOnce.Do(func() { close(w.skip) }) }

// Run takes messages until ctx is done (or the worker has been idle for
// ExitWhenIdle), then stops intake, drains in-flight messages until
// DrainTimeout or SkipDrain, and returns the summary. It blocks until every
// message it took is settled and the goroutines it started have ended, or,
// when the broker does not answer, for at most two SettleTimeouts after the
// drain's end, leaving the settles in progress to end within their own
// SettleTimeout. It does not close the source or anything else: the
// caller's release does.
func (w *Worker) Run(ctx context.Context) Summary {
	w.ready.Store(true)
	w.progressAt.Store(time.Now().UnixNano())
	// Work in flight runs on proc, which only the drain deadline cancels,
	// and only after Interrupt could not end its statements.
	proc, cancelProc := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelProc()
	// The keeper and the watchdog run until Run returns.
	stopKeep := make(chan struct{})
	var keepers sync.WaitGroup
	keepers.Go(func() { w.keep(stopKeep) })
	keepers.Go(func() { w.watch(proc, stopKeep) })
	defer func() {
		close(stopKeep)
		keepers.Wait()
		w.settleLog.flush()
	}()
	var wg sync.WaitGroup
	w.intake(ctx, proc, &wg)
	w.ready.Store(false)

	stopCtx, cancel := w.settleCtx()
	if err := w.src.Stop(stopCtx); err != nil {
		w.log.Warn("worker: stop intake", "err", err)
	}
	cancel()

	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }() // ends with the last group
	drained := true
	timer := time.NewTimer(w.cfg.DrainTimeout)
	defer timer.Stop()
	select {
	case <-done:
	case <-timer.C:
		drained = false
		w.log.Warn("worker: drain deadline passed; handing back what is unfinished", "in_flight", w.figs.inFlight.Load())
	case <-w.skip:
		drained = false
		w.log.Warn("worker: drain skipped; handing back what is unfinished", "in_flight", w.figs.inFlight.Load())
	}
	if !drained {
		// No statement begins from here; those running are interrupted on
		// the server, so that each fails, rolls back and gives its
		// connection back intact. Cancelling their contexts would make
		// the driver cut the connections (aborted clients on the server):
		// that is the last resort, for a database that does not answer or
		// a pool that cannot interrupt.
		w.cut.Store(true)
		w.interrupt(done)
	}
	cancelProc()
	// In-flight work now fails at once and is handed back within a settle
	// timeout; a broker that does not answer cannot hold shutdown longer.
	select {
	case <-done:
	case <-time.After(2 * w.cfg.SettleTimeout):
		w.log.Warn("worker: in-flight messages not settled in time; the broker redelivers them", "in_flight", w.figs.inFlight.Load())
	}
	w.out.stop()
	s := w.Stats()
	s.Drained = drained
	return s
}

// interrupt ends, with the store's Interrupt, the statements that
// in-flight work runs, again every interruptEvery (a statement may begin
// between two rounds), until done is closed or a settle timeout passes. It
// returns at once when the database is down (it would not answer) or the
// store cannot interrupt.
func (w *Worker) interrupt(done <-chan struct{}) {
	if w.out.current() != nil {
		return
	}
	give := time.NewTimer(w.cfg.SettleTimeout)
	defer give.Stop()
	for {
		ctx, cancel := w.settleCtx()
		n, err := w.store.Interrupt(ctx)
		cancel()
		w.figs.interrupted.Add(int64(n))
		if errors.Is(err, poolset.ErrInterruptUnsupported) {
			return
		}
		if err != nil {
			w.log.Warn("worker: interrupt statements", "err", err)
		}
		select {
		case <-done:
			return
		case <-give.C:
			w.log.Warn("worker: in-flight statements did not end after interrupting them; cancelling them", "in_flight", w.figs.inFlight.Load())
			return
		case <-time.After(interruptEvery):
		}
	}
}

// interruptEvery is how often interrupt asks again.
const interruptEvery = 100 * time.Millisecond
