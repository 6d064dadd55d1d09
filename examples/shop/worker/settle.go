package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/poolset/poolset/examples/shop/shop"
)

// verdict is what becomes of a message the worker took.
type verdict int

const (
	// ack: done (placed, registered); counted by what was stored.
	ack verdict = iota
	// retry: failed for now; nak'ed with a delay that grows with each
	// delivery, counted as nak'ed.
	retry
	// deadLetter: failed for good (invalid, or its last delivery); moved
	// to the dead letter with its reason, or dropped when the broker
	// refuses the copy.
	deadLetter
	// handBack: unfinished when the drain was cut short; nak'ed at once
	// for prompt redelivery, counted as abandoned.
	handBack
)

// settlement is one verdict on some deliveries.
type settlement struct {
	verdict verdict
	ds      []Delivery
	// placed has, for an ack of orders, what was stored for each of ds;
	// nil for an ack of registrations.
	placed []shop.Placed
	// reason says why, for deadLetter; err is the failure, for retry.
	reason string
	err    error
}

// failure decides what becomes of d, whose processing failed with err:
// handed back at once when the drain was cut short, dead-lettered on its
// last delivery, else retried.
func (w *Worker) failure(proc context.Context, d Delivery, err error) settlement {
	ds := []Delivery{d}
	switch {
	case proc.Err() != nil || w.cut.Load():
		return settlement{verdict: handBack, ds: ds}
	case d.Delivered() >= w.cfg.MaxDeliver:
		return settlement{verdict: deadLetter, ds: ds, reason: fmt.Sprintf("failed %d deliveries; last error: %v", d.Delivered(), err)}
	}
	return settlement{verdict: retry, ds: ds, err: err}
}

// settle carries out s: the one path by which the worker settles a
// message, whatever the outcome. It records the deliveries as no longer
// pending (progress, for the watchdog), settles each with a context that
// shutdown does not cancel (bounded by SettleTimeout), counts and logs the
// outcome, and frees their places in flight for intake. A settle that
// fails is counted in SettleErrors and logged at most once a second per
// kind: the broker delivers those messages again.
func (w *Worker) settle(s settlement) {
	w.untrack(s.ds...)
	defer w.free(len(s.ds))
	ctx, cancel := w.settleCtx()
	defer cancel()
	if s.verdict == ack {
		w.ackAll(ctx, s)
		return
	}
	for _, d := range s.ds {
		switch s.verdict {
		case handBack:
			w.figs.abandoned.Add(1)
			if err := d.Nak(ctx, 0); err != nil {
				w.settleFailed("hand back", 1, err)
			}
		case retry:
			delay := min(w.cfg.RetryDelay<<max(min(d.Delivered()-1, 6), 0), 5*time.Second)
			w.log.Warn("worker: will retry", "delivery", d.Delivered(), "in", delay, "err", s.err)
			if err := d.Nak(ctx, delay); err != nil {
				w.settleFailed("nak", 1, err)
				continue
			}
			w.figs.naked.Add(1)
		case deadLetter:
			w.deadLetter(ctx, d, s.reason)
		}
	}
}

// ackAll acks s.ds, in one round trip when there are several and the
// source is a BatchAcker, and counts each acked.
func (w *Worker) ackAll(ctx context.Context, s settlement) {
	if ba, ok := w.src.(BatchAcker); ok && len(s.ds) > 1 {
		if err := ba.AckBatch(ctx, s.ds); err != nil {
			w.settleFailed("ack", len(s.ds), err)
			return
		}
		now := time.Now()
		for i := range s.ds {
			w.acked(s, i, now)
		}
		return
	}
	for i, d := range s.ds {
		if err := d.Ack(ctx); err != nil {
			w.settleFailed("ack", 1, err)
			continue
		}
		w.acked(s, i, time.Now())
	}
}

// acked counts s.ds[i], acked at at.
func (w *Worker) acked(s settlement, i int, at time.Time) {
	if s.placed == nil {
		w.figs.registered.Add(1)
		w.figs.finished()
		return
	}
	w.figs.placed(s.placed[i])
	w.figs.ackedAt(s.ds[i], at)
}

// deadLetter moves d to the dead letter with reason; when the broker
// refuses the copy for good, it drops d instead, so that d is never
// redelivered: a message that can be neither placed nor dead-lettered
// would otherwise come back every ack wait for ever.
func (w *Worker) deadLetter(ctx context.Context, d Delivery, reason string) {
	err := d.DeadLetter(ctx, reason)
	switch {
	case err == nil:
		w.figs.deadLettered.Add(1)
		w.figs.finished()
		w.log.Info("worker: dead-lettered", "subject", d.Subject(), "reason", reason)
	case !errors.Is(err, ErrDeadLetterRefused):
		w.settleFailed("dead-letter", 1, err)
	default:
		if derr := d.Drop(ctx, reason); derr != nil {
			w.figs.settleErrors.Add(1)
			w.log.Warn("worker: drop a message whose dead-letter copy was refused", "err", derr, "reason", reason, "refused", err)
			return
		}
		w.figs.dropped.Add(1)
		w.figs.finished()
		w.log.Error("worker: dropped a message: the broker refused its dead-letter copy", "subject", d.Subject(),
			"bytes", len(d.Data()), "reason", reason, "refused", err)
	}
}

// settleFailed counts n messages whose settle op failed with err, and logs
// them with the others of the last second.
func (w *Worker) settleFailed(op string, n int, err error) {
	w.figs.settleErrors.Add(int64(n))
	w.settleLog.add(op, n, err)
}

// settleCtx is the context of one settle: not derived from Run's ctx, so
// shutdown never cancels a settle.
func (w *Worker) settleCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), w.cfg.SettleTimeout)
}
