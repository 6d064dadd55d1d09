package natsqueue

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/poolset/poolset/examples/shop/worker"
)

// Source pulls deliveries from the broker's durable consumer. It implements
// worker.Source and is safe for concurrent use by multiple goroutines.
//
// A pull consumer holds nothing in this process beyond what a Fetch has
// returned, so Stop has nothing to hand back; deliveries a Fetch had
// returned are the caller's to settle.
type Source struct {
	b    *Broker
	cons jetstream.Consumer

	stopCtx context.Context // cancelled by Stop; ends the Fetches in progress
	stop    context.CancelFunc

	mu      sync.Mutex
	stopped bool
	active  int           // Fetches in progress
	idle    chan struct{} // closed once stopped and no Fetch is in progress
}

var (
	_ worker.Broker    = (*Broker)(nil)
	_ worker.Source    = (*Source)(nil)
	_ worker.Delivery  = (*Delivery)(nil)
	_ worker.Publisher = (*Publisher)(nil)
)

func newSource(b *Broker, c jetstream.Consumer) *Source {
	ctx, cancel := context.WithCancel(context.Background())
	return &Source{b: b, cons: c, stopCtx: ctx, stop: cancel, idle: make(chan struct{})}
}

// Fetch asks the server for up to n deliveries and waits up to maxWait for
// them; with maxWait 0 it takes only those available at once. It returns
// early with what it has when ctx is done or Stop is called, and with none
// and a nil error when the wait ends empty. It returns ctx's error only
// when ctx ended the wait before anything arrived, and ErrSourceStopped
// when called after Stop, or stopped before anything arrived.
//
// Each delivery must be settled by Ack, Nak or DeadLetter; one that is not
// is redelivered after the consumer's AckWait.
func (s *Source) Fetch(ctx context.Context, n int, maxWait time.Duration) ([]worker.Delivery, error) {
	if n <= 0 {
		return nil, fmt.Errorf("nats: fetch: batch size %d, want at least 1", n)
	}
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return nil, worker.ErrSourceStopped
	}
	s.active++
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.active--
		if s.stopped && s.active == 0 {
			close(s.idle)
		}
		s.mu.Unlock()
	}()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("nats: fetch: %w", err)
	}

	// Take what the stream has at once; only when that is nothing, wait
	// for one message, then take what came with it. A pull for n that
	// waited for n would hold a short batch back until maxWait.
	out, err := s.fetchNoWait(ctx, n)
	if len(out) > 0 || err != nil || maxWait <= 0 {
		return out, err
	}
	// The wait ends at maxWait, when ctx is done, or on Stop.
	// FetchContext gives the server a slightly shorter expiry, so an empty
	// wait normally ends with the server's timeout reply.
	fctx, cancel := context.WithTimeout(ctx, maxWait)
	defer cancel()
	unhook := context.AfterFunc(s.stopCtx, cancel)
	defer unhook()
	batch, err := s.cons.Fetch(1, jetstream.FetchContext(fctx))
	if err != nil {
		if ctx.Err() == nil && !s.isStopped() && deadlinePassed(fctx) {
			return nil, nil // maxWait too short to ask the server at all
		}
		return nil, s.fetchErr(ctx, err)
	}
	// Messages is closed when the batch ends, which is also when the
	// fetch's goroutine in nats.go ends.
	for m := range batch.Messages() {
		out = append(out, s.delivery(m))
	}
	if len(out) > 0 {
		if n > 1 {
			more, _ := s.fetchNoWait(ctx, n-1)
			out = append(out, more...)
		}
		return out, nil
	}
	if err := batch.Error(); err != nil {
		if errors.Is(err, fctx.Err()) && ctx.Err() == nil && !s.isStopped() {
			return nil, nil // maxWait passed
		}
		return nil, s.fetchErr(ctx, err)
	}
	if s.isStopped() {
		return nil, worker.ErrSourceStopped
	}
	return nil, nil
}

// fetchNoWait returns up to n messages the stream has now, without
// waiting for more.
func (s *Source) fetchNoWait(ctx context.Context, n int) ([]worker.Delivery, error) {
	batch, err := s.cons.FetchNoWait(n)
	if err != nil {
		return nil, s.fetchErr(ctx, err)
	}
	var out []worker.Delivery
	for m := range batch.Messages() {
		out = append(out, s.delivery(m))
	}
	if len(out) == 0 {
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return nil, s.fetchErr(ctx, err)
		}
	}
	return out, nil
}

func (s *Source) fetchErr(ctx context.Context, err error) error {
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("nats: fetch: %w", ctx.Err())
	case s.isStopped():
		return worker.ErrSourceStopped
	case errors.Is(err, jetstream.ErrNoMessages), errors.Is(err, nats.ErrTimeout):
		return nil
	}
	return fmt.Errorf("nats: fetch from %s: %w", s.b.opts.Consumer, err)
}

func deadlinePassed(ctx context.Context) bool {
	dl, ok := ctx.Deadline()
	return ok && !time.Now().Before(dl)
}

func (s *Source) isStopped() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopped
}

func (s *Source) delivery(m jetstream.Msg) *Delivery {
	d := &Delivery{b: s.b, msg: m, subject: s.b.unprefixed(m.Subject()), delivered: 1}
	if md, err := m.Metadata(); err == nil {
		d.delivered = int(md.NumDelivered)
		d.stream = md.Stream
		d.seq = md.Sequence.Stream
		d.stored = md.Timestamp.UnixNano()
	}
	return d
}

// Stop stops intake: Fetches in progress end at once, returning what they
// have, and later Fetches return ErrSourceStopped. It blocks until the
// Fetches in progress have returned, or until ctx is done. It is
// idempotent. Deliveries already returned stay valid and must still be
// settled; the broker's connection stays open for that.
func (s *Source) Stop(ctx context.Context) error {
	s.mu.Lock()
	if !s.stopped {
		s.stopped = true
		s.stop()
		if s.active == 0 {
			close(s.idle)
		}
	}
	s.mu.Unlock()
	select {
	case <-s.idle:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("nats: stop: %w", ctx.Err())
	}
}

// AckBatch acks ds, deliveries of this source, without waiting for each
// confirmation, then flushes the connection once: it returns when the
// server has received every ack, bounded by ctx (5s if ctx has no
// deadline). It implements worker.BatchAcker.
func (s *Source) AckBatch(ctx context.Context, ds []worker.Delivery) error {
	var errs []error
	for _, wd := range ds {
		d, ok := wd.(*Delivery)
		if !ok {
			errs = append(errs, fmt.Errorf("nats: ack batch: %T is not a delivery of this source", wd))
			continue
		}
		if err := d.settle("ack", d.msg.Ack); err != nil {
			errs = append(errs, err)
		}
	}
	if err := s.b.flush(ctx); err != nil {
		errs = append(errs, fmt.Errorf("nats: ack batch: %w", err))
	}
	return errors.Join(errs...)
}

// ExtendBatch extends those of ds that are not settled (see Extend) and
// waits, bounded by ctx, until the server has received every request: one
// round trip for all of them. It implements worker.BatchExtender.
func (s *Source) ExtendBatch(ctx context.Context, ds []worker.Delivery) error {
	var errs []error
	for _, wd := range ds {
		d, ok := wd.(*Delivery)
		if !ok {
			errs = append(errs, fmt.Errorf("nats: extend batch: %T is not a delivery of this source", wd))
			continue
		}
		if err := d.extend(); err != nil && !errors.Is(err, worker.ErrAlreadySettled) {
			errs = append(errs, err)
		}
	}
	if err := s.b.flush(ctx); err != nil {
		errs = append(errs, fmt.Errorf("nats: extend batch: %w", err))
	}
	return errors.Join(errs...)
}

// Connected reports whether the connection to the server is up. It
// implements worker.Connectivity.
func (s *Source) Connected() bool { return s.b.nc.IsConnected() }
