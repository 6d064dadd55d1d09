// Package worker runs the shop's message processing: it pulls order and
// registration messages from a broker (package nats or rabbitmq), places
// each order in a transaction on the shared primary pool, and settles the
// message only after the commit.
//
// Shutdown is the point of the package. When Run's ctx is done (the first
// SIGTERM), the worker stops fetching; messages already taken keep running
// on a context that is not cancelled until the drain deadline; acks and
// naks use a context of their own; whatever is still unfinished at the
// deadline (or on SkipDrain, the second signal) is nak'ed at once for
// prompt redelivery and counted as abandoned. Then Run returns, and the
// caller releases the consumers, the cache, the SQL pools and last the
// broker connection.
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/poolset/poolset"
	"github.com/poolset/poolset/examples/shop/shop"
)

// Config tunes a Worker. Zero fields take the documented defaults.
type Config struct {
	// Concurrency is the most transactions in flight. Default: 16.
	Concurrency int
	// Group is the most orders placed in one transaction when the queue
	// is deep (each order still all or nothing). 1 places one order per
	// transaction. Default: 1.
	Group int
	// GroupConcurrency is the most transactions of more than one order in
	// flight. Groups lock many product rows each, in id order: more of
	// them at once mostly wait on each other. Default: 2.
	GroupConcurrency int
	// MaxDeliver is the delivery after whose failure a message goes to the
	// dead letter with its last error. Default: 5.
	MaxDeliver int
	// DrainTimeout bounds the wait for in-flight messages after Run's ctx
	// is done. Default: 20 s (inside Kubernetes' 30 s grace).
	DrainTimeout time.Duration
	// FetchWait is how long one fetch waits for messages. Default: 500 ms.
	FetchWait time.Duration
	// ExitWhenIdle, when positive, ends intake once nothing arrived for
	// that long, by the same path as a signal. Default: 0 (never).
	ExitWhenIdle time.Duration
	// RetryDelay is the redelivery delay after the first transient
	// failure; it doubles with each delivery, up to 5 s. Default: 100 ms.
	RetryDelay time.Duration
	// SettleTimeout bounds each ack, nak or dead-lettering. Default: 5 s.
	SettleTimeout time.Duration
	// StallAfter is how long messages may be in flight with none settled
	// before the worker pings the database on a connection of its own, to
	// tell a hung server (the ping does not answer: an outage) from slow
	// statements (it does: nothing changes). Default: 1 s.
	StallAfter time.Duration
	// BusyPause is the pause before an operation that met the pool's
	// acquire timeout on a live database runs again. Such an operation
	// spends no delivery: a busy pool is not the message's fault.
	// Default: 100 ms.
	BusyPause time.Duration
	// Logger receives the worker's logs. Default: slog.Default().
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	if c.Concurrency <= 0 {
		c.Concurrency = 16
	}
	if c.Group <= 0 {
		c.Group = 1
	}
	if c.GroupConcurrency <= 0 {
		c.GroupConcurrency = 2
	}
	if c.MaxDeliver <= 0 {
		c.MaxDeliver = 5
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = 20 * time.Second
	}
	if c.FetchWait <= 0 {
		c.FetchWait = 500 * time.Millisecond
	}
	if c.RetryDelay <= 0 {
		c.RetryDelay = 100 * time.Millisecond
	}
	if c.SettleTimeout <= 0 {
		c.SettleTimeout = 5 * time.Second
	}
	if c.StallAfter <= 0 {
		c.StallAfter = time.Second
	}
	if c.BusyPause <= 0 {
		c.BusyPause = 100 * time.Millisecond
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Summary counts what a worker did. Acked = Accepted + Rejected +
// Duplicates + Registered.
type Summary struct {
	Received     int64 `json:"received"`
	Acked        int64 `json:"acked"`
	Accepted     int64 `json:"accepted"`
	Rejected     int64 `json:"rejected"`
	Duplicates   int64 `json:"duplicates"`
	Registered   int64 `json:"registered"`
	Naked        int64 `json:"naked"`
	DeadLettered int64 `json:"dead_lettered"`
	// Dropped counts messages settled without a dead-letter copy because
	// the broker refused the copy (ErrDeadLetterRefused): each is logged
	// with its reason at error level.
	Dropped      int64 `json:"dropped"`
	Abandoned    int64 `json:"abandoned"`
	SettleErrors int64 `json:"settle_errors"`
	InFlight     int64 `json:"in_flight"`
	// Held is how many messages in flight are held because the database
	// does not answer (all of them, during an outage); Outages counts the
	// times it stopped answering, and OutageTime is how long it did not,
	// in all.
	Held       int64         `json:"held"`
	Outages    int64         `json:"outages"`
	OutageTime time.Duration `json:"outage_ns"`
	// BusyRetries counts operations run again, without a nak, after they
	// met the pool's acquire timeout on a live database; Extended counts
	// the extensions of pending messages' settle deadlines; StallPings
	// counts the pings sent because nothing was settled for StallAfter;
	// Interrupted counts the statements ended by the pool's Interrupt when
	// the drain was cut short.
	BusyRetries int64 `json:"busy_retries"`
	Extended    int64 `json:"extended"`
	StallPings  int64 `json:"stall_pings"`
	Interrupted int64 `json:"interrupted"`
	// Busy is the time from the first message received to the last one
	// settled; Rate is Acked over it, in messages a second.
	Busy time.Duration `json:"busy_ns"`
	Rate float64       `json:"rate"`
	// AckLatencyP50 and AckLatencyP99 are the times from publish to ack of
	// the acked orders whose broker gives a publish time (zero otherwise).
	AckLatencyP50 time.Duration `json:"ack_latency_p50_ns"`
	AckLatencyP99 time.Duration `json:"ack_latency_p99_ns"`
	// Drained is false when the drain deadline or SkipDrain cut the drain
	// short.
	Drained bool `json:"drained"`
}

// Worker processes messages from a Source. Its methods are safe for
// concurrent use; Run is called once.
type Worker struct {
	shop *shop.Shop
	src  Source
	cfg  Config
	log  *slog.Logger

	ready    atomic.Bool
	skip     chan struct{}
	skipOnce sync.Once

	received, accepted, rejected, duplicates, registered  atomic.Int64
	naked, deadLettered, dropped, abandoned, settleErrors atomic.Int64
	inFlightMsgs                                          atomic.Int64
	busyRetries, extended, stallPings, interrupted        atomic.Int64
	out                                                   *outage
	firstAt, lastAt                                       atomic.Int64 // unix nanos of the first receive and the last ack or dead-lettering
	progressAt                                            atomic.Int64 // unix nanos of the last settle of any kind, or of Run's start
	cut                                                   atomic.Bool  // the drain was cut short: no statement begins
	freed                                                 chan struct{}
	settleLog                                             *burstLog

	groupSlots chan struct{} // one per group transaction in flight
	slots      chan struct{} // one per single-order transaction in flight

	latMu     sync.Mutex
	latencies []time.Duration // publish to ack of acked orders: the last maxLatencies
	latNext   int

	pendMu  sync.Mutex
	pending map[Delivery]time.Time // taken and not yet settled, with when it was taken
}

// New returns a worker that places s's orders from src.
func New(s *shop.Shop, src Source, cfg Config) *Worker {
	cfg.setDefaults()
	w := &Worker{shop: s, src: src, cfg: cfg, log: cfg.Logger, skip: make(chan struct{}), freed: make(chan struct{}, 1),
		groupSlots: make(chan struct{}, cfg.GroupConcurrency), slots: make(chan struct{}, cfg.Concurrency),
		pending: make(map[Delivery]time.Time), settleLog: newBurstLog(cfg.Logger)}
	w.out = &outage{ping: s.Ping, log: cfg.Logger}
	return w
}

// Ready reports whether the worker is taking messages: true from Run's
// start until its ctx is done, except while the database does not answer.
func (w *Worker) Ready() bool { return w.ready.Load() && w.out.current() == nil }

// DatabaseDown reports whether the database is not answering now, so that
// the worker holds its messages and fetches none.
func (w *Worker) DatabaseDown() bool { return w.out.current() != nil }

// SkipDrain ends the drain at once (the second signal): what is in flight
// is nak'ed and counted as abandoned. It is idempotent.
func (w *Worker) SkipDrain() { w.skipOnce.Do(func() { close(w.skip) }) }

// Stats returns the counters so far.
func (w *Worker) Stats() Summary {
	s := Summary{
		Received: w.received.Load(), Accepted: w.accepted.Load(), Rejected: w.rejected.Load(),
		Duplicates: w.duplicates.Load(), Registered: w.registered.Load(), Naked: w.naked.Load(),
		DeadLettered: w.deadLettered.Load(), Dropped: w.dropped.Load(), Abandoned: w.abandoned.Load(), SettleErrors: w.settleErrors.Load(),
		InFlight: w.inFlightMsgs.Load(), BusyRetries: w.busyRetries.Load(), Extended: w.extended.Load(),
		StallPings: w.stallPings.Load(), Interrupted: w.interrupted.Load(),
	}
	var on bool
	s.Outages, s.OutageTime, on = w.out.stats()
	if on {
		s.Held = s.InFlight
	}
	s.Acked = s.Accepted + s.Rejected + s.Duplicates + s.Registered
	w.latMu.Lock()
	lat := slices.Clone(w.latencies)
	w.latMu.Unlock()
	slices.Sort(lat)
	s.AckLatencyP50, s.AckLatencyP99 = shop.Percentile(lat, 50), shop.Percentile(lat, 99)
	if first, last := w.firstAt.Load(), w.lastAt.Load(); first > 0 && last > first {
		s.Busy = time.Duration(last - first)
		s.Rate = float64(s.Acked) / s.Busy.Seconds()
	}
	return s
}

// Run takes messages until ctx is done (or the worker has been idle for
// ExitWhenIdle), then stops intake, drains in-flight messages until
// DrainTimeout or SkipDrain, and returns the summary. It does not close
// the source or anything else: the caller's release does.
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

	stopCtx, cancel := context.WithTimeout(context.Background(), w.cfg.SettleTimeout)
	if err := w.src.Stop(stopCtx); err != nil {
		w.log.Warn("worker: stop intake", "err", err)
	}
	cancel()

	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	drained := true
	timer := time.NewTimer(w.cfg.DrainTimeout)
	defer timer.Stop()
	select {
	case <-done:
	case <-timer.C:
		drained = false
		w.log.Warn("worker: drain deadline passed; handing back what is unfinished", "in_flight", w.inFlightMsgs.Load())
	case <-w.skip:
		drained = false
		w.log.Warn("worker: drain skipped; handing back what is unfinished", "in_flight", w.inFlightMsgs.Load())
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
		w.log.Warn("worker: in-flight messages not settled in time; the broker redelivers them", "in_flight", w.inFlightMsgs.Load())
	}
	w.out.stop()
	s := w.Stats()
	s.Drained = drained
	return s
}

// intake fetches and dispatches messages until ctx is done or the worker
// has been idle for ExitWhenIdle.
func (w *Worker) intake(ctx, proc context.Context, wg *sync.WaitGroup) {
	// The most messages taken and not yet settled: Concurrency single
	// orders, or for groups, one group running and three waiting per slot,
	// so that the database never waits for a fetch.
	limit := int64(w.cfg.Concurrency)
	if w.cfg.Group > 1 {
		limit = max(limit, int64(4*w.cfg.GroupConcurrency*w.cfg.Group))
	}
	last := time.Now()
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		free := limit - w.inFlightMsgs.Load()
		if free <= 0 {
			last = time.Now() // all slots busy is not idle
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
		if w.cfg.ExitWhenIdle > 0 && time.Since(last) >= w.cfg.ExitWhenIdle && w.inFlightMsgs.Load() == 0 {
			w.log.Info("worker: idle; shutting down", "idle_for", w.cfg.ExitWhenIdle)
			return
		}
		msgs, err := w.src.Fetch(ctx, int(free), w.cfg.FetchWait)
		// When grouping, top a short batch up for a moment: a broker that
		// pushes (RabbitMQ) hands over what has arrived so far, and small
		// groups waste the group slots.
		for lingerEnd := time.Now().Add(groupLinger); w.cfg.Group > 1 && err == nil && len(msgs) > 0 &&
			len(msgs) < int(free) && len(msgs)%w.cfg.Group != 0 && time.Now().Before(lingerEnd); {
			var more []Delivery
			more, err = w.src.Fetch(ctx, int(free)-len(msgs), time.Until(lingerEnd))
			if len(more) == 0 {
				break
			}
			msgs = append(msgs, more...)
		}
		if len(msgs) > 0 {
			w.firstAt.CompareAndSwap(0, time.Now().UnixNano())
			w.received.Add(int64(len(msgs)))
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

type orderMsg struct {
	d Delivery
	o shop.Order
}

// dispatch settles invalid messages, registers users (before the orders
// taken with them, which may be theirs), and starts the orders in groups.
// While the database does not answer, the registration holds intake; if
// ctx ends meanwhile, the users and the orders taken with them are handed
// back together.
func (w *Worker) dispatch(ctx, proc context.Context, msgs []Delivery, wg *sync.WaitGroup) {
	var orders []orderMsg
	var users []shop.User
	var userMsgs []Delivery
	for _, d := range msgs {
		switch d.Subject() {
		case SubjectOrderPlaced:
			o, err := DecodeOrder(d.Data())
			if err != nil {
				w.deadLetter(d, err.Error())
				continue
			}
			orders = append(orders, orderMsg{d, o})
		case SubjectUserRegistered:
			u, err := DecodeUser(d.Data())
			if err != nil {
				w.deadLetter(d, err.Error())
				continue
			}
			users, userMsgs = append(users, u), append(userMsgs, d)
		default:
			w.deadLetter(d, fmt.Sprintf("unknown subject %q", d.Subject()))
		}
	}
	// Everything taken is in flight, and held in an outage, from here.
	ds := slices.Clone(userMsgs)
	for _, m := range orders {
		ds = append(ds, m.d)
	}
	w.track(ds...)
	w.inFlightMsgs.Add(int64(len(ds)))
	if len(users) > 0 {
		hold, stop := context.WithCancel(proc)
		defer stop()
		defer context.AfterFunc(ctx, stop)()
		var err error
		for {
			epoch := w.out.epoch()
			err = w.shop.Users.RegisterMany(proc, users)
			if err == nil {
				break
			}
			again, down := w.hold(proc, hold, err, epoch)
			if down && !again {
				// A signal, or the drain's end, while the database does
				// not answer: the batch goes back whole, so that no
				// order runs before its user.
				w.handBack(ds)
				w.inFlightMsgs.Add(-int64(len(ds)))
				return
			}
			if !again {
				break
			}
		}
		for _, d := range userMsgs {
			if err != nil {
				w.fail(proc, d, err)
			} else if w.ack(d) {
				w.registered.Add(1)
				w.lastAt.Store(time.Now().UnixNano())
			}
		}
		w.inFlightMsgs.Add(-int64(len(userMsgs)))
	}
	for len(orders) > 0 {
		n := min(len(orders), w.cfg.Group)
		group := orders[:n:n]
		orders = orders[n:]
		wg.Go(func() {
			defer func() {
				w.inFlightMsgs.Add(-int64(len(group)))
				select {
				case w.freed <- struct{}{}:
				default:
				}
			}()
			w.place(proc, group)
		})
	}
}

// groupLinger is how long intake tops up a short batch when grouping.
const groupLinger = 20 * time.Millisecond

// place places a group of orders and settles each message.
func (w *Worker) place(proc context.Context, group []orderMsg) {
	if len(group) > 1 {
		w.groupSlots <- struct{}{}
		defer func() { <-w.groupSlots }()
		orders := make([]shop.Order, len(group))
		for i, m := range group {
			orders[i] = m.o
		}
		// PlaceOrders runs the group again after a deadlock; a group that
		// still fails, other than in an outage, goes one by one below.
		for proc.Err() == nil && !w.cut.Load() {
			epoch := w.out.epoch()
			placed, err := w.shop.PlaceOrders(proc, orders)
			if err == nil {
				w.settleGroup(group, placed)
				return
			}
			if again, _ := w.hold(proc, proc, err, epoch); !again {
				w.log.Debug("worker: group failed; placing its orders one by one", "orders", len(group), "err", err)
				break
			}
		}
	}
	if len(group) == 1 {
		w.slots <- struct{}{}
		defer func() { <-w.slots }()
	}
	// One by one, so that one bad order does not hold back the rest.
	for i, m := range group {
		var p shop.Placed
		var err error
		for {
			if proc.Err() != nil || w.cut.Load() {
				w.handBack(deliveries(group[i:]))
				return
			}
			epoch := w.out.epoch()
			p, err = w.shop.PlaceOrder(proc, m.o)
			if err == nil {
				break
			}
			if again, _ := w.hold(proc, proc, err, epoch); !again {
				break
			}
		}
		if err != nil {
			w.fail(proc, m.d, err)
			continue
		}
		w.settlePlaced(m.d, p)
	}
}

// settleGroup acks a group placed in one transaction: in one round trip
// when the source is a BatchAcker.
func (w *Worker) settleGroup(group []orderMsg, placed []shop.Placed) {
	ba, ok := w.src.(BatchAcker)
	if !ok {
		for i, p := range placed {
			w.settlePlaced(group[i].d, p)
		}
		return
	}
	ds := deliveries(group)
	w.untrack(ds...)
	ctx, cancel := w.settleCtx()
	defer cancel()
	if err := ba.AckBatch(ctx, ds); err != nil {
		w.settleErrors.Add(int64(len(ds)))
		w.settleLog.add("ack", len(ds), err)
		return
	}
	for _, p := range placed {
		w.count(p)
	}
	w.acked(ds...)
}

// handBack naks ds at once, all within one settle timeout, after the
// drain was cut short, and counts them as abandoned.
func (w *Worker) handBack(ds []Delivery) {
	w.untrack(ds...)
	ctx, cancel := w.settleCtx()
	defer cancel()
	for _, d := range ds {
		w.abandoned.Add(1)
		if err := d.Nak(ctx, 0); err != nil {
			w.settleErrors.Add(1)
			w.settleLog.add("hand back", 1, err)
		}
	}
}

func deliveries(msgs []orderMsg) []Delivery {
	ds := make([]Delivery, len(msgs))
	for i, m := range msgs {
		ds[i] = m.d
	}
	return ds
}

// hold waits, when an operation that began at epoch failed with err
// because the database does not answer (down), until it answers again, and
// reports whether it did (again), so that the operation should run again.
// It returns false, false at once when the database answers (err was the
// statement's), and true, false when wait or proc ended first. Its
// messages stay pending meanwhile, extended by the outage's extender.
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
	w.busyRetries.Add(1)
	select {
	case <-wait.Done():
		return false, false
	case <-time.After(w.cfg.BusyPause):
	}
	return !w.cut.Load(), false
}

// interrupt ends, with the primary pool's Interrupt, the statements that
// in-flight work runs, again every interruptEvery (a statement may begin
// between two rounds), until done is closed or a settle timeout passes. It
// returns at once when the database is down (it would not answer) or the
// pool cannot interrupt.
func (w *Worker) interrupt(done <-chan struct{}) {
	if w.out.current() != nil {
		return
	}
	give := time.NewTimer(w.cfg.SettleTimeout)
	defer give.Stop()
	for {
		ctx, cancel := w.settleCtx()
		n, err := w.shop.Interrupt(ctx)
		cancel()
		w.interrupted.Add(int64(n))
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
			w.log.Warn("worker: in-flight statements did not end after interrupting them; cancelling them", "in_flight", w.inFlightMsgs.Load())
			return
		case <-time.After(interruptEvery):
		}
	}
}

// interruptEvery is how often interrupt asks again.
const interruptEvery = 100 * time.Millisecond

func (w *Worker) settlePlaced(d Delivery, p shop.Placed) {
	if w.ack(d) {
		w.count(p)
		w.acked(d)
	}
}

// maxLatencies bounds the publish-to-ack samples kept for the percentiles.
const maxLatencies = 1 << 16

// acked records d's time from publish to ack, when its broker says when it
// was published.
func (w *Worker) acked(ds ...Delivery) {
	now := time.Now()
	w.latMu.Lock()
	defer w.latMu.Unlock()
	for _, d := range ds {
		if ts, ok := d.(Timestamped); ok {
			if at := ts.PublishedAt(); !at.IsZero() {
				if len(w.latencies) < maxLatencies {
					w.latencies = append(w.latencies, now.Sub(at))
				} else {
					w.latencies[w.latNext] = now.Sub(at)
					w.latNext = (w.latNext + 1) % maxLatencies
				}
			}
		}
	}
}

func (w *Worker) count(p shop.Placed) {
	w.lastAt.Store(time.Now().UnixNano())
	switch {
	case p.Duplicate:
		w.duplicates.Add(1)
	case p.Order.Status == shop.Accepted:
		w.accepted.Add(1)
	default:
		w.rejected.Add(1)
	}
}

// fail settles a message whose processing failed with err: handed back at
// once when the drain was cut short, dead-lettered on its last delivery,
// else nak'ed with a delay that grows with each delivery.
func (w *Worker) fail(proc context.Context, d Delivery, err error) {
	w.untrack(d)
	ctx, cancel := w.settleCtx()
	defer cancel()
	switch {
	case proc.Err() != nil || w.cut.Load():
		w.abandoned.Add(1)
		if nerr := d.Nak(ctx, 0); nerr != nil {
			w.settleErrors.Add(1)
			w.settleLog.add("hand back", 1, nerr)
		}
	case d.Delivered() >= w.cfg.MaxDeliver:
		w.deadLetter(d, fmt.Sprintf("failed %d deliveries; last error: %v", d.Delivered(), err))
	default:
		delay := w.cfg.RetryDelay << min(d.Delivered()-1, 6)
		delay = min(delay, 5*time.Second)
		w.log.Warn("worker: will retry", "delivery", d.Delivered(), "in", delay, "err", err)
		if nerr := d.Nak(ctx, delay); nerr != nil {
			w.settleErrors.Add(1)
			w.settleLog.add("nak", 1, nerr)
			return
		}
		w.naked.Add(1)
	}
}

func (w *Worker) deadLetter(d Delivery, reason string) {
	w.untrack(d)
	ctx, cancel := w.settleCtx()
	defer cancel()
	if err := d.DeadLetter(ctx, reason); err != nil {
		if errors.Is(err, ErrDeadLetterRefused) {
			w.drop(ctx, d, reason, err)
			return
		}
		w.settleErrors.Add(1)
		w.settleLog.add("dead-letter", 1, err)
		return
	}
	w.deadLettered.Add(1)
	w.lastAt.Store(time.Now().UnixNano())
	w.log.Info("worker: dead-lettered", "subject", d.Subject(), "reason", reason)
}

// drop settles d, whose dead-letter copy the broker refused for good (cause),
// so that it is never redelivered: a message that can be neither placed nor
// dead-lettered would otherwise come back every ack wait for ever.
func (w *Worker) drop(ctx context.Context, d Delivery, reason string, cause error) {
	if err := d.Drop(ctx, reason); err != nil {
		w.settleErrors.Add(1)
		w.log.Warn("worker: drop a message whose dead-letter copy was refused", "err", err, "reason", reason, "refused", cause)
		return
	}
	w.dropped.Add(1)
	w.lastAt.Store(time.Now().UnixNano())
	w.log.Error("worker: dropped a message: the broker refused its dead-letter copy", "subject", d.Subject(),
		"bytes", len(d.Data()), "reason", reason, "refused", cause)
}

func (w *Worker) ack(d Delivery) bool {
	w.untrack(d)
	ctx, cancel := w.settleCtx()
	defer cancel()
	if err := d.Ack(ctx); err != nil {
		w.settleErrors.Add(1)
		w.settleLog.add("ack", 1, err)
		return false
	}
	return true
}

// settleCtx is the context of one ack, nak or dead-lettering: not derived
// from Run's ctx, so shutdown never cancels a settle.
func (w *Worker) settleCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), w.cfg.SettleTimeout)
}
