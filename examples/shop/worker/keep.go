package worker

import (
	"context"
	"errors"
	"time"
)

// A message the worker has taken is its own until it settles it: the broker
// must not hand it to another consumer meanwhile, however long it waits for
// a slot, a pool connection, a row lock or a database that does not answer.
// So the keeper extends every pending delivery that has a settle deadline
// (NATS's AckWait) before the deadline passes, for as long as Run runs; and
// the watchdog notices a database that hangs (a stopped server still
// accepts TCP connections, so statements wait without failing) by pinging
// it whenever nothing has been settled for a while.

// minExtendEvery bounds how often the keeper extends pending deliveries.
const minExtendEvery = 100 * time.Millisecond

// take records ds as taken and not yet settled: pending, so that the
// keeper extends them, and in flight, counted against intake's limit, until
// settle untracks and frees them.
func (w *Worker) take(ds []Delivery) {
	now := time.Now()
	w.figs.inFlight.Add(int64(len(ds)))
	w.pendMu.Lock()
	defer w.pendMu.Unlock()
	for _, d := range ds {
		w.pending[d] = now
	}
}

// untrack records ds as settled, or given up: progress, for the watchdog.
// The keeper extends them no more.
func (w *Worker) untrack(ds ...Delivery) {
	w.progressAt.Store(time.Now().UnixNano())
	w.pendMu.Lock()
	defer w.pendMu.Unlock()
	for _, d := range ds {
		delete(w.pending, d)
	}
}

// free gives back n places in flight, once their messages are settled,
// and wakes intake if it waits for one.
func (w *Worker) free(n int) {
	w.figs.inFlight.Add(-int64(n))
	select {
	case w.freed <- struct{}{}:
	default:
	}
}

// keep extends, every ExtendEvery of the pending deliveries (the shortest,
// at least minExtendEvery), those taken more than that long ago, until stop
// is closed. A delivery taken at t is so extended by t + 2·every, within
// its deadline when every is a third of it, as Extender.ExtendEvery
// promises. With nothing pending that has a deadline it looks again a
// second later.
func (w *Worker) keep(stop <-chan struct{}) {
	every := minExtendEvery
	for {
		select {
		case <-stop:
			return
		case <-time.After(every):
		}
		every = w.extendPending()
	}
}

// extendPending resets, in one pass over the pending deliveries, the
// broker's settle deadline of those that have one and were taken more than
// the shortest ExtendEvery among them ago (in one round trip when the
// source is a BatchExtender), and returns that interval, or a second when
// none has a deadline.
func (w *Worker) extendPending() time.Duration {
	type taken struct {
		d  Delivery
		at time.Time
	}
	var every time.Duration
	var ext []taken
	w.pendMu.Lock()
	for d, at := range w.pending {
		if e, ok := d.(Extender); ok {
			if x := e.ExtendEvery(); x > 0 && (every == 0 || x < every) {
				every = x
			}
			ext = append(ext, taken{d, at})
		}
	}
	w.pendMu.Unlock()
	if every <= 0 { // nothing pending has a deadline
		return time.Second
	}
	every = max(every, minExtendEvery)
	cutoff := time.Now().Add(-every)
	var ds []Delivery
	for _, t := range ext {
		if t.at.Before(cutoff) {
			ds = append(ds, t.d)
		}
	}
	if len(ds) == 0 {
		return every
	}
	ctx, cancel := w.settleCtx()
	defer cancel()
	var errs []error
	if be, ok := w.src.(BatchExtender); ok {
		if err := be.ExtendBatch(ctx, ds); err != nil {
			errs = append(errs, err)
		}
	} else {
		for _, d := range ds {
			if err := d.(Extender).Extend(ctx); err != nil {
				errs = append(errs, err)
			}
		}
	}
	w.figs.extended.Add(int64(len(ds) - len(errs)))
	if len(errs) > 0 {
		// Some may have been settled meanwhile; the others come again and
		// count as duplicates.
		w.settleLog.add("extend", len(errs), errors.Join(errs...))
	}
	return every
}

// errStalled is the cause the watchdog gives for the ping it sends.
var errStalled = errors.New("worker: nothing settled while messages wait")

// stallCheck is how often the watchdog looks for a stall.
const stallCheck = 250 * time.Millisecond

// watch pings the database, on a connection outside the pool, whenever
// messages are in flight and none has been settled for StallAfter (and
// then at most every StallAfter), until stop is closed. A ping that fails
// begins an outage (see outage.down): the messages are held, intake
// pauses and /readyz fails, though no statement has failed, since on a hung
// server none does. A ping that answers means the statements are slow (a
// row lock, a busy pool), not the server hung: nothing changes.
func (w *Worker) watch(proc context.Context, stop <-chan struct{}) {
	t := time.NewTicker(stallCheck)
	defer t.Stop()
	var lastPing time.Time
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		if w.figs.inFlight.Load() == 0 || w.out.current() != nil || w.cut.Load() {
			continue
		}
		now := time.Now()
		quiet := now.Sub(time.Unix(0, w.progressAt.Load()))
		if quiet < w.cfg.StallAfter || now.Sub(lastPing) < w.cfg.StallAfter || w.oldestPending() < w.cfg.StallAfter {
			continue
		}
		lastPing = now
		w.figs.stallPings.Add(1)
		w.out.down(proc, errStalled, w.out.epoch())
	}
}

// oldestPending returns how long the oldest pending delivery has waited.
func (w *Worker) oldestPending() time.Duration {
	w.pendMu.Lock()
	defer w.pendMu.Unlock()
	var oldest time.Time
	for _, at := range w.pending {
		if oldest.IsZero() || at.Before(oldest) {
			oldest = at
		}
	}
	if oldest.IsZero() {
		return 0
	}
	return time.Since(oldest)
}
