package worker

import (
	"context"
	"errors"
	"time"

	"github.com/poolset/poolset"
	"github.com/poolset/poolset/examples/shop/shop"
)

// place places a group of orders and settles each message. A group of more
// than one runs in one transaction, on one of GroupConcurrency slots; if
// that fails other than in an outage (the store runs it again after a
// deadlock), its orders are placed one by one, so that one bad order does
// not hold back the rest. A single order runs on one of Concurrency slots.
// Once the drain is cut short, what is not placed yet is handed back.
func (w *Worker) place(proc context.Context, group []orderMsg) {
	if len(group) > 1 {
		w.groupSlots <- struct{}{}
		defer func() { <-w.groupSlots }()
		if w.placeGroup(proc, group) {
			return
		}
	}
	if len(group) == 1 {
		w.slots <- struct{}{}
		defer func() { <-w.slots }()
	}
	for i, m := range group {
		var p shop.Placed
		var err error
		for {
			if proc.Err() != nil || w.cut.Load() {
				w.settle(settlement{verdict: handBack, ds: deliveries(group[i:])})
				return
			}
			epoch := w.out.epoch()
			if p, err = w.store.PlaceOrder(proc, m.o); err == nil {
				break
			}
			if again, _ := w.hold(proc, proc, err, epoch); !again {
				break
			}
		}
		if err != nil {
			w.settle(w.failure(proc, m.d, err))
			continue
		}
		w.settle(settlement{verdict: ack, ds: []Delivery{m.d}, placed: []shop.Placed{p}})
	}
}

// placeGroup places group in one transaction, holding while the database
// does not answer, and acks its messages; it reports false, with nothing
// settled, when the group failed for another reason or the drain was cut
// short.
func (w *Worker) placeGroup(proc context.Context, group []orderMsg) bool {
	orders := make([]shop.Order, len(group))
	for i, m := range group {
		orders[i] = m.o
	}
	for proc.Err() == nil && !w.cut.Load() {
		epoch := w.out.epoch()
		placed, err := w.store.PlaceOrders(proc, orders)
		if err == nil {
			w.settle(settlement{verdict: ack, ds: deliveries(group), placed: placed})
			return true
		}
		if again, _ := w.hold(proc, proc, err, epoch); !again {
			w.log.Debug("worker: group failed; placing its orders one by one", "orders", len(group), "err", err)
			return false
		}
	}
	return false
}

// hold waits, when an operation that began at epoch failed with err
// because the database does not answer (down), until it answers again, and
// reports whether it did (again), so that the operation should run again.
// It returns false, false at once when the database answers (err was the
// statement's) or proc is done, and false, true when wait ended before the
// database answered. Its messages stay pending meanwhile, extended by the
// keeper.
//
// An operation that met the pool's acquire timeout on a live database is
// run again too (again, not down) after BusyPause, spending no delivery:
// the pool was busy, the message is not at fault, and the keeper keeps it
// meanwhile. Once the drain is cut short nothing runs again.
func (w *Worker) hold(proc, wait context.Context, err error, epoch int64) (again, down bool) {
	if w.cut.Load() {
		return false, false
	}
	if w.out.down(proc, err, epoch) {
		return w.out.wait(wait) == nil && !w.cut.Load(), true
	}
	if !errors.Is(err, poolset.ErrAcquireTimeout) {
		return false, false
	}
	w.figs.busyRetries.Add(1)
	select {
	case <-wait.Done():
		return false, false
	case <-time.After(w.cfg.BusyPause):
	}
	return !w.cut.Load(), false
}
