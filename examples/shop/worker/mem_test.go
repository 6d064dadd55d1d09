package worker_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/poolset/poolset"
	"github.com/poolset/poolset/examples/shop/shop"
	"github.com/poolset/poolset/examples/shop/worker"
)

// The in-memory broker and store of the worker's unit tests. The broker
// records every settle and extension; the store can block its statements
// until released or interrupted, be down, and reject poison orders.

var (
	_ worker.Source     = (*memQueue)(nil)
	_ worker.Delivery   = (*memDelivery)(nil)
	_ worker.Extender   = (*memDelivery)(nil)
	_ worker.BatchAcker = batchQueue{}
	_ worker.Store      = (*memStore)(nil)
	_ worker.Store      = (*shop.Shop)(nil)
)

// memQueue is an in-memory broker queue: a worker.Source whose deliveries
// record how they were settled. A Nak'ed message is queued again at once
// (its delay is recorded, not waited for) with its delivery count one
// higher. It is safe for concurrent use.
type memQueue struct {
	extendEvery time.Duration // the deliveries' ExtendEvery; 0: no settle deadline
	refuseDead  bool          // DeadLetter fails with worker.ErrDeadLetterRefused

	wake chan struct{} // signalled when a message is queued or Stop is called

	mu      sync.Mutex
	ready   []*memDelivery // queued, not yet fetched
	out     []*memDelivery // every delivery fetched, in order
	dead    []worker.DeadLetter
	stops   int
	stopped bool
}

func newMemQueue() *memQueue { return &memQueue{wake: make(chan struct{}, 1)} }

// batchQueue is a memQueue that acks many deliveries at once.
type batchQueue struct{ *memQueue }

// AckBatch acks each of ds, deliveries of this queue.
func (q batchQueue) AckBatch(ctx context.Context, ds []worker.Delivery) error {
	var errs []error
	for _, d := range ds {
		errs = append(errs, d.Ack(ctx))
	}
	return errors.Join(errs...)
}

func (q *memQueue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// publish queues a message on subject.
func (q *memQueue) publish(subject string, data []byte) {
	q.requeue(&memDelivery{q: q, subject: subject, data: data, delivered: 1})
}

func (q *memQueue) requeue(d *memDelivery) {
	q.mu.Lock()
	q.ready = append(q.ready, d)
	q.mu.Unlock()
	q.signal()
}

func (q *memQueue) Fetch(ctx context.Context, n int, maxWait time.Duration) ([]worker.Delivery, error) {
	deadline := time.Now().Add(maxWait)
	for {
		q.mu.Lock()
		if q.stopped {
			q.mu.Unlock()
			return nil, worker.ErrSourceStopped
		}
		if len(q.ready) > 0 {
			k := min(n, len(q.ready))
			got := make([]worker.Delivery, k)
			for i, d := range q.ready[:k] {
				got[i] = d
			}
			q.out = append(q.out, q.ready[:k]...)
			q.ready = q.ready[k:]
			q.mu.Unlock()
			return got, nil
		}
		q.mu.Unlock()
		wait := time.Until(deadline)
		if wait <= 0 {
			return nil, nil
		}
		t := time.NewTimer(wait)
		select {
		case <-q.wake:
			t.Stop()
		case <-t.C:
			return nil, nil
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		}
	}
}

func (q *memQueue) Stop(context.Context) error {
	q.mu.Lock()
	q.stops++
	q.stopped = true
	q.mu.Unlock()
	q.signal()
	return nil
}

// fetched returns every delivery fetched so far.
func (q *memQueue) fetched() []*memDelivery {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]*memDelivery(nil), q.out...)
}

// queued returns how many messages wait to be fetched.
func (q *memQueue) queued() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.ready)
}

func (q *memQueue) stopCalls() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.stops
}

func (q *memQueue) deadLetters() []worker.DeadLetter {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]worker.DeadLetter(nil), q.dead...)
}

// memDelivery is one delivery of a memQueue.
type memDelivery struct {
	q         *memQueue
	subject   string
	data      []byte
	delivered int
	extends   atomic.Int64

	mu       sync.Mutex
	attempts int    // settle calls, successful or not
	settled  string // "", "ack", "nak", "dead-letter" or "drop"
	delay    time.Duration
	reason   string
}

func (d *memDelivery) Subject() string { return d.subject }
func (d *memDelivery) Data() []byte    { return d.data }
func (d *memDelivery) Delivered() int  { return d.delivered }

// settle marks d settled by op, unless it is settled.
func (d *memDelivery) settle(op string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.attempts++
	if d.settled != "" {
		return worker.ErrAlreadySettled
	}
	d.settled = op
	return nil
}

func (d *memDelivery) Ack(context.Context) error { return d.settle("ack") }

func (d *memDelivery) Nak(_ context.Context, delay time.Duration) error {
	if err := d.settle("nak"); err != nil {
		return err
	}
	d.mu.Lock()
	d.delay = delay
	d.mu.Unlock()
	d.q.requeue(&memDelivery{q: d.q, subject: d.subject, data: d.data, delivered: d.delivered + 1})
	return nil
}

func (d *memDelivery) DeadLetter(_ context.Context, reason string) error {
	if d.q.refuseDead { // refused for good: left unsettled, for Drop
		return fmt.Errorf("mem: dead-letter: %w", worker.ErrDeadLetterRefused)
	}
	if err := d.settle("dead-letter"); err != nil {
		return err
	}
	d.mu.Lock()
	d.reason = reason
	d.mu.Unlock()
	d.q.mu.Lock()
	d.q.dead = append(d.q.dead, worker.DeadLetter{Subject: d.subject, Reason: reason, Data: d.data})
	d.q.mu.Unlock()
	return nil
}

func (d *memDelivery) Drop(_ context.Context, reason string) error {
	if err := d.settle("drop"); err != nil {
		return err
	}
	d.mu.Lock()
	d.reason = reason
	d.mu.Unlock()
	return nil
}

func (d *memDelivery) ExtendEvery() time.Duration { return d.q.extendEvery }

func (d *memDelivery) Extend(context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.settled != "" {
		return worker.ErrAlreadySettled
	}
	d.extends.Add(1)
	return nil
}

// state returns how d was settled ("" if not), with the nak delay, and how
// many settles were tried.
func (d *memDelivery) state() (settled string, delay time.Duration, attempts int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.settled, d.delay, d.attempts
}

// Errors of the memStore.
var (
	errDown        = errors.New("mem: connection refused")
	errPoison      = errors.New("mem: data too long for column 'id'")
	errInterrupted = errors.New("mem: query execution was interrupted")
)

// memStore is an in-memory worker.Store. It is safe for concurrent use.
type memStore struct {
	mu            sync.Mutex
	down          bool            // every call fails with errDown, and so does Ping
	poison        map[string]bool // order ids whose placement fails with errPoison
	gate          chan struct{}   // non-nil: statements wait for it to close
	intr          chan struct{}   // closed by Interrupt (then replaced): waiting statements fail
	interruptible bool            // Interrupt ends waiting statements, else it is unsupported
	waiting       int             // statements waiting at the gate
	stored        map[string]int  // times each order id was stored
	orders        map[string]shop.Order
	users         map[int64]shop.User
	groups        int // PlaceOrders calls
}

func newMemStore() *memStore {
	return &memStore{poison: map[string]bool{}, intr: make(chan struct{}), interruptible: true,
		stored: map[string]int{}, orders: map[string]shop.Order{}, users: map[int64]shop.User{}}
}

// block makes statements wait from now on until release.
func (s *memStore) block() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gate = make(chan struct{})
}

// release lets waiting and later statements run.
func (s *memStore) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	close(s.gate)
	s.gate = nil
}

func (s *memStore) setDown(down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = down
}

// waitingNow returns how many statements wait at the gate.
func (s *memStore) waitingNow() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.waiting
}

// enter runs a statement's wait at the gate, and fails it when the store
// is down.
func (s *memStore) enter(ctx context.Context) error {
	s.mu.Lock()
	gate, intr := s.gate, s.intr
	if gate != nil {
		s.waiting++
	}
	s.mu.Unlock()
	if gate != nil {
		defer func() {
			s.mu.Lock()
			s.waiting--
			s.mu.Unlock()
		}()
		select {
		case <-gate:
		case <-intr:
			return errInterrupted
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		return errDown
	}
	return nil
}

// placeLocked stores o unless its id is stored, as the shop does.
func (s *memStore) placeLocked(o shop.Order) shop.Placed {
	if s.stored[o.ID] > 0 {
		return shop.Placed{Order: s.orders[o.ID], Duplicate: true}
	}
	o.Status = shop.Accepted
	s.stored[o.ID]++
	s.orders[o.ID] = o
	return shop.Placed{Order: o}
}

func (s *memStore) PlaceOrder(ctx context.Context, o shop.Order) (shop.Placed, error) {
	if err := s.enter(ctx); err != nil {
		return shop.Placed{}, fmt.Errorf("mem: place order %s: %w", o.ID, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.poison[o.ID] {
		return shop.Placed{}, fmt.Errorf("mem: place order %s: %w", o.ID, errPoison)
	}
	return s.placeLocked(o), nil
}

func (s *memStore) PlaceOrders(ctx context.Context, orders []shop.Order) ([]shop.Placed, error) {
	if err := s.enter(ctx); err != nil {
		return nil, fmt.Errorf("mem: place %d orders: %w", len(orders), err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.groups++
	for _, o := range orders {
		if s.poison[o.ID] { // the transaction fails whole: nothing stored
			return nil, fmt.Errorf("mem: place %d orders: %w", len(orders), errPoison)
		}
	}
	out := make([]shop.Placed, len(orders))
	for i, o := range orders {
		out[i] = s.placeLocked(o)
	}
	return out, nil
}

func (s *memStore) RegisterUsers(ctx context.Context, users []shop.User) error {
	if err := s.enter(ctx); err != nil {
		return fmt.Errorf("mem: register %d users: %w", len(users), err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, u := range users {
		s.users[u.ID] = u
	}
	return nil
}

func (s *memStore) Ping(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		return errDown
	}
	return nil
}

func (s *memStore) Interrupt(context.Context) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.interruptible {
		return 0, fmt.Errorf("mem: interrupt: %w", poolset.ErrInterruptUnsupported)
	}
	n := s.waiting
	close(s.intr)
	s.intr = make(chan struct{})
	return n, nil
}

// groupCalls returns how many times PlaceOrders was called.
func (s *memStore) groupCalls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.groups
}

// storedCounts returns how many times each order id was stored.
func (s *memStore) storedCounts() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.stored))
	for id, n := range s.stored {
		out[id] = n
	}
	return out
}

// orderMsg returns the JSON of a valid order id for user 1.
func orderMsg(id string) []byte {
	return worker.EncodeOrder(shop.Order{ID: id, UserID: 1, Items: []shop.Item{{ProductID: 1, Qty: 1}}})
}

// running is a worker's Run in progress.
type running struct {
	w      *worker.Worker
	cancel context.CancelFunc // the first signal
	done   chan worker.Summary
}

// start runs a worker on q (or src, when given) and s.
func start(t *testing.T, s worker.Store, src worker.Source, cfg worker.Config) *running {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{w: worker.New(s, src, cfg), cancel: cancel, done: make(chan worker.Summary, 1)}
	go func() { r.done <- r.w.Run(ctx) }() // ends with Run; wait reads it
	return r
}

// wait returns Run's summary, failing the test if Run does not return.
func (r *running) wait(t *testing.T) worker.Summary {
	t.Helper()
	select {
	case s := <-r.done:
		return s
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return within 30s")
		return worker.Summary{}
	}
}

// waitFor polls cond until it holds, failing the test after 10s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("waited 10s for %s", what)
		}
	}
}

// outcomes counts how the fetched deliveries were settled ("" for not
// settled), and fails the test for any that was settled more than once or
// tried more than once.
func outcomes(t *testing.T, q *memQueue) map[string]int {
	t.Helper()
	got := map[string]int{}
	for _, d := range q.fetched() {
		settled, _, attempts := d.state()
		got[settled]++
		if attempts > 1 {
			t.Errorf("delivery %s (delivery %d): %d settles tried; want 1", d.data, d.delivered, attempts)
		}
	}
	return got
}
