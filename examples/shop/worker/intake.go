package worker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/poolset/poolset/examples/shop/shop"
)

// groupLinger is how long intake tops up a short batch when grouping.
const groupLinger = 20 * time.Millisecond

// limit is the most messages taken and not yet settled: Concurrency single
// orders, or for groups, one group running and three waiting per slot, so
// that the database never waits for a fetch.
func (w *Worker) limit() int64 {
	limit := int64(w.cfg.Concurrency)
	if w.cfg.Group > 1 {
		limit = max(limit, int64(4*w.cfg.GroupConcurrency*w.cfg.Group))
	}
	return limit
}

// intake fetches and dispatches messages until ctx is done or the worker
// has been idle for ExitWhenIdle. It takes no more than limit messages
// that are not yet settled, and none while the database does not answer.
func (w *Worker) intake(ctx, proc context.Context, wg *sync.WaitGroup) {
	limit := w.limit()
	last := time.Now()
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		free := limit - w.figs.inFlight.Load()
		if free <= 0 {
			last = time.Now() // all places busy is not idle
			select {
			case <-ctx.Done():
				return
			case <-w.freed:
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		if c, ok := w.src.(Connectivity); ok && !c.Connected() {
			last = time.Now() // disconnected is not idle
		}
		if w.out.current() != nil {
			// Nothing is fetched while the database does not answer, and
			// the time does not count as idle.
			if w.out.wait(ctx) != nil {
				return
			}
			last = time.Now()
			continue
		}
		if w.cfg.ExitWhenIdle > 0 && time.Since(last) >= w.cfg.ExitWhenIdle && w.figs.inFlight.Load() == 0 {
			w.log.Info("worker: idle; shutting down", "idle_for", w.cfg.ExitWhenIdle)
			return
		}
		msgs, err := w.fetch(ctx, int(free))
		if len(msgs) > 0 {
			w.figs.receivedN(len(msgs))
			w.dispatch(ctx, proc, msgs, wg)
			last = time.Now() // after dispatch, which an outage may hold
		}
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, ErrSourceStopped) {
				return
			}
			w.log.Warn("worker: fetch", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 2*time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
	}
}

// fetch takes up to free messages, waiting up to FetchWait for the first.
// When grouping, it tops a short batch up for a moment: a broker that
// pushes (RabbitMQ) hands over what has arrived so far, and small groups
// waste the group slots.
func (w *Worker) fetch(ctx context.Context, free int) ([]Delivery, error) {
	msgs, err := w.src.Fetch(ctx, free, w.cfg.FetchWait)
	for lingerEnd := time.Now().Add(groupLinger); w.cfg.Group > 1 && err == nil && len(msgs) > 0 &&
		len(msgs) < free && len(msgs)%w.cfg.Group != 0 && time.Now().Before(lingerEnd); {
		var more []Delivery
		more, err = w.src.Fetch(ctx, free-len(msgs), time.Until(lingerEnd))
		if len(more) == 0 {
			break
		}
		msgs = append(msgs, more...)
	}
	return msgs, err
}

// orderMsg is an order and the delivery it came in.
type orderMsg struct {
	d Delivery
	o shop.Order
}

func deliveries(msgs []orderMsg) []Delivery {
	ds := make([]Delivery, len(msgs))
	for i, m := range msgs {
		ds[i] = m.d
	}
	return ds
}

// dispatch takes msgs (pending and in flight until settled), dead-letters
// the invalid ones, registers users (before the orders taken with them,
// which may be theirs), and starts the orders in groups, each group on a
// goroutine of wg. While the database does not answer, the registration
// holds intake; if ctx ends meanwhile, the users and the orders taken with
// them are handed back together.
func (w *Worker) dispatch(ctx, proc context.Context, msgs []Delivery, wg *sync.WaitGroup) {
	w.take(msgs)
	var orders []orderMsg
	var users []shop.User
	var userMsgs []Delivery
	for _, d := range msgs {
		switch d.Subject() {
		case SubjectOrderPlaced:
			o, err := DecodeOrder(d.Data())
			if err != nil {
				w.settle(settlement{verdict: deadLetter, ds: []Delivery{d}, reason: err.Error()})
				continue
			}
			orders = append(orders, orderMsg{d, o})
		case SubjectUserRegistered:
			u, err := DecodeUser(d.Data())
			if err != nil {
				w.settle(settlement{verdict: deadLetter, ds: []Delivery{d}, reason: err.Error()})
				continue
			}
			users, userMsgs = append(users, u), append(userMsgs, d)
		default:
			w.settle(settlement{verdict: deadLetter, ds: []Delivery{d}, reason: fmt.Sprintf("unknown subject %q", d.Subject())})
		}
	}
	if len(users) > 0 && !w.register(ctx, proc, users, userMsgs, orders) {
		return
	}
	for len(orders) > 0 {
		n := min(len(orders), w.cfg.Group)
		group := orders[:n:n]
		orders = orders[n:]
		wg.Go(func() { w.place(proc, group) })
	}
}

// register stores users, holding while the database does not answer, and
// settles their messages. It reports false when ctx ended while the
// database did not answer: it has then handed back the users' messages
// and the orders', so that no order runs before its user.
func (w *Worker) register(ctx, proc context.Context, users []shop.User, userMsgs []Delivery, orders []orderMsg) bool {
	hold, stop := context.WithCancel(proc)
	defer stop()
	defer context.AfterFunc(ctx, stop)()
	var err error
	for {
		epoch := w.out.epoch()
		if err = w.store.RegisterUsers(proc, users); err == nil {
			w.settle(settlement{verdict: ack, ds: userMsgs})
			return true
		}
		again, down := w.hold(proc, hold, err, epoch)
		if down && !again {
			w.settle(settlement{verdict: handBack, ds: slices.Concat(userMsgs, deliveries(orders))})
			return false
		}
		if !again {
			break
		}
	}
	for _, d := range userMsgs {
		w.settle(w.failure(proc, d, err))
	}
	return true
}
