package rabbitqueue

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/poolset/poolset/examples/shop/worker"
)

// errStopped tells the reconnect goroutine that a Source wants no consumer.
var errStopped = errors.New("rabbitmq: source stopped")

// Source is a consumer of the queue, on a channel of its own with manual
// acknowledgement and the Broker's Prefetch, that the worker pulls from
// with Fetch. It implements worker.Source. When the connection drops, the
// Broker reopens the Source's consumer on the new connection and Fetch goes
// on returning deliveries from it. It is safe for concurrent use.
type Source struct {
	b      *Broker
	stopCh chan struct{} // closed by Stop or the Broker's Close

	// life serialises opening the consumer (Source and the reconnect
	// goroutine), Stop and the Broker's Close.
	life    sync.Mutex
	stopped atomic.Bool // set under life
	shut    bool
	cons    *consumer   // the current consumer; nil until the first opens
	retired []*consumer // consumers the broker cancelled, channels still open

	mu         sync.Mutex
	buf        []*Delivery   // received, not yet returned by Fetch
	handedBack bool          // Stop handed buf back: arrivals are nacked at once
	ready      chan struct{} // signalled when buf may have grown

	dmu     sync.Mutex
	delayed map[*Delivery]*time.Timer // Naks waiting for their delay
	flushed bool                      // Stop ran: Nak no longer waits
	timers  sync.WaitGroup            // running delayed-Nak callbacks
}

// consumer is one channel's consumer and its pump goroutine, which ends
// when the deliveries channel closes: on Cancel, on channel or connection
// close, or when the broker cancels the consumer.
type consumer struct {
	ch        *channel
	tag       string
	done      chan struct{} // closed when the pump returns
	ended     atomic.Bool   // the deliveries channel has closed; done closes next
	unsettled atomic.Int64  // deliveries received on ch and not yet settled
}

// Source opens a consumer of the queue. ctx bounds waiting for the
// connection. Each call opens another consumer, on its own channel, which
// the Broker's Close closes.
func (b *Broker) Source(ctx context.Context) (*Source, error) {
	conn, err := b.connection(ctx)
	if err != nil {
		return nil, err
	}
	s := &Source{
		b:       b,
		stopCh:  make(chan struct{}),
		ready:   make(chan struct{}, 1),
		delayed: make(map[*Delivery]*time.Timer),
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, ErrClosed
	}
	b.sources[s] = struct{}{}
	b.mu.Unlock()
	if err := s.ensureConsumer(conn); err != nil {
		b.mu.Lock()
		delete(b.sources, s)
		b.mu.Unlock()
		s.shutdown(ctx)
		if errors.Is(err, errStopped) {
			return nil, ErrClosed
		}
		return nil, fmt.Errorf("rabbitmq: consume %s: %w", b.opts.Queue, err)
	}
	return s, nil
}

// ensureConsumer opens a consumer on conn unless the Source has a live one
// or is stopped.
func (s *Source) ensureConsumer(conn *amqp.Connection) error {
	s.life.Lock()
	defer s.life.Unlock()
	if s.stopped.Load() {
		return errStopped
	}
	if c := s.cons; c != nil {
		closed := c.ch.closed()
		if !closed && !c.ended.Load() {
			return nil // still consuming
		}
		<-c.done     // ends at once: its deliveries channel has closed
		if !closed { // the broker cancelled the consumer
			s.retired = append(s.retired, c) // open for settling until Close
		}
		s.cons = nil
	}
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	if err := ch.Qos(s.b.opts.Prefetch, 0, false); err != nil {
		ch.Close()
		return err
	}
	tag := fmt.Sprintf("poolset-%s-%d-%d", s.b.host, os.Getpid(), s.b.tags.Add(1))
	in, err := ch.Consume(s.b.opts.Queue, tag, false, false, false, false, nil)
	if err != nil {
		ch.Close()
		return err
	}
	c := &consumer{ch: &channel{Channel: ch}, tag: tag, done: make(chan struct{})}
	s.cons = c
	go s.pump(c, in) // ends when in closes; Stop and shutdown wait on c.done
	return nil
}

// pump moves deliveries from the consumer's channel into the Source's
// buffer, where Fetch takes them.
func (s *Source) pump(c *consumer, in <-chan amqp.Delivery) {
	defer close(c.done)
	for ad := range in {
		c.unsettled.Add(1)
		d := &Delivery{src: s, c: c, d: ad}
		s.mu.Lock()
		if s.handedBack {
			s.mu.Unlock()
			d.handBack()
			continue
		}
		s.buf = append(s.buf, d)
		s.mu.Unlock()
		s.signal()
	}
	if c.ch.closed() {
		// The broker has requeued whatever this channel held: drop it.
		s.mu.Lock()
		kept := s.buf[:0]
		for _, d := range s.buf {
			if d.c != c {
				kept = append(kept, d)
			}
		}
		clear(s.buf[len(kept):])
		s.buf = kept
		s.mu.Unlock()
	}
	c.ended.Store(true)
	if !s.stopped.Load() {
		s.b.wake() // after ended is set, so that the wake finds the consumer ended
	}
}

func (s *Source) signal() {
	select {
	case s.ready <- struct{}{}:
	default:
	}
}

// Fetch returns up to n deliveries. It waits up to maxWait (no wait when
// maxWait <= 0), or until ctx is done, for the first, then takes only what
// has already arrived. It returns none, and no error, when maxWait passes
// empty; ctx's error when ctx ends first; and worker.ErrSourceStopped after
// Stop or the Broker's Close. While the connection is down Fetch waits for
// the reconnect like for any delivery. Each delivery returned must be
// settled once, by Ack, Nak or DeadLetter.
func (s *Source) Fetch(ctx context.Context, n int, maxWait time.Duration) ([]worker.Delivery, error) {
	if n <= 0 {
		return nil, nil
	}
	var expired <-chan time.Time
	if maxWait > 0 {
		t := time.NewTimer(maxWait)
		defer t.Stop()
		expired = t.C
	}
	for {
		if s.stopped.Load() {
			return nil, worker.ErrSourceStopped
		}
		if got := s.take(n); len(got) > 0 {
			return got, nil
		}
		if maxWait <= 0 {
			return nil, nil
		}
		select {
		case <-s.ready:
		case <-s.stopCh:
			return nil, worker.ErrSourceStopped
		case <-expired:
			return nil, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// take removes up to n live deliveries from the buffer.
func (s *Source) take(n int) []worker.Delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	var got []worker.Delivery
	i := 0
	for ; i < len(s.buf) && len(got) < n; i++ {
		if d := s.buf[i]; !d.c.ch.closed() {
			got = append(got, d)
		}
	}
	clear(s.buf[:i])
	s.buf = s.buf[i:]
	if len(s.buf) > 0 {
		s.signal() // for another Fetch
	}
	return got
}

// Stop cancels the consumer, so that the broker pushes no more, and hands
// back at once (nack with requeue) every delivery received that Fetch has
// not returned, together with any Nak still waiting for its delay; a Nak
// with a delay after Stop hands back at once. Deliveries Fetch has returned
// stay the caller's to settle, on the channel, which stays open until the
// Broker's Close. Stop waits, up to ctx, for the broker to confirm the
// cancel. Later Fetch calls return worker.ErrSourceStopped. Stop is
// idempotent.
func (s *Source) Stop(ctx context.Context) error {
	s.life.Lock()
	defer s.life.Unlock()
	if s.stopped.Load() {
		return nil
	}
	return s.stop(ctx)
}

// stop is Stop with s.life held.
func (s *Source) stop(ctx context.Context) error {
	s.stopped.Store(true)
	close(s.stopCh)
	var err error
	c := s.cons
	if c != nil && !c.ch.closed() {
		if cerr := c.ch.Cancel(c.tag, false); cerr != nil && !c.ch.closed() {
			err = fmt.Errorf("rabbitmq: stop: cancel consumer %s: %w", c.tag, cerr)
		}
	}
	s.handBackBuffered()
	s.flushDelayed()
	if c != nil {
		select {
		case <-c.done:
		case <-ctx.Done():
			return errors.Join(err, fmt.Errorf("rabbitmq: stop: waiting for consumer %s to end: %w", c.tag, ctx.Err()))
		}
	}
	return err
}

// handBackBuffered nacks, with requeue, every delivery Fetch has not
// returned, and makes the pump nack any that arrive later.
func (s *Source) handBackBuffered() {
	s.mu.Lock()
	buf := s.buf
	s.buf, s.handedBack = nil, true
	s.mu.Unlock()
	for _, d := range buf {
		d.handBack()
	}
}

// later schedules d's nack after delay and reports true, or reports false
// when Stop has run and d must be nacked at once.
func (s *Source) later(d *Delivery, delay time.Duration) bool {
	s.dmu.Lock()
	defer s.dmu.Unlock()
	if s.flushed {
		return false
	}
	s.timers.Add(1)
	// The callback takes dmu first, so it finds d in delayed even when the
	// timer fires before this function returns.
	s.delayed[d] = time.AfterFunc(delay, func() {
		defer s.timers.Done()
		s.dmu.Lock()
		_, mine := s.delayed[d]
		delete(s.delayed, d)
		s.dmu.Unlock()
		if mine {
			if err := d.nack(); err != nil {
				s.b.log.Debug("rabbitmq: delayed nak", "err", err)
			}
		}
	})
	return true
}

// flushDelayed nacks at once every delivery whose Nak waits for its delay,
// and waits for the timer callbacks already running.
func (s *Source) flushDelayed() {
	s.dmu.Lock()
	delayed := s.delayed
	s.delayed, s.flushed = map[*Delivery]*time.Timer{}, true
	s.dmu.Unlock()
	for d, t := range delayed {
		if t.Stop() {
			s.timers.Done()
		}
		d.nack()
	}
	s.timers.Wait()
}

// unsettled counts the deliveries received on open channels and not yet
// settled.
func (s *Source) unsettled() int {
	s.life.Lock()
	defer s.life.Unlock()
	n := 0
	for _, c := range append([]*consumer{s.cons}, s.retired...) {
		if c != nil && !c.ch.closed() {
			n += int(c.unsettled.Load())
		}
	}
	return n
}

// shutdown is the Broker's Close of the Source: it stops the Source as
// Stop does, waiting up to ctx, then, unless ctx has ended, waits for the
// broker to take the settles sent on each channel (awaitSettles), closes
// the channels, which hands back to the broker whatever the worker has not
// settled, and waits for the pumps. It is idempotent.
func (s *Source) shutdown(ctx context.Context) error {
	s.life.Lock()
	defer s.life.Unlock()
	if s.shut {
		return nil
	}
	s.shut = true
	var errs []error
	if !s.stopped.Load() {
		errs = append(errs, s.stop(ctx))
	}
	for _, c := range append([]*consumer{s.cons}, s.retired...) {
		if c == nil {
			continue
		}
		if ctx.Err() == nil {
			if err := s.awaitSettles(c); err != nil && !c.ch.closed() {
				s.b.log.Warn("rabbitmq: close: the broker did not confirm it has taken the acks; their messages may come again",
					"consumer", c.tag, "err", err)
			}
		}
		if err := c.ch.close(); err != nil && !errors.Is(err, amqp.ErrClosed) {
			errs = append(errs, fmt.Errorf("close consumer %s: %w", c.tag, err))
		}
		<-c.done
	}
	return errors.Join(errs...)
}

// Connected reports whether the broker's connection is up. It implements
// worker.Connectivity.
func (s *Source) Connected() bool {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	return s.b.conn != nil && !s.b.conn.IsClosed()
}

// awaitSettles returns once the broker has passed every ack, nack and
// reject sent so far on c's channel on to the queue, so that closing the
// channel cannot undo them; or with the error of the channel, which then
// closes.
//
// AMQP 0-9-1 does not confirm acks, and the broker's channel does not pass
// them on at once: for a quorum queue each ack (multiple=false) is a
// settle command of its own, and once 32 commands of the channel wait for
// the queue to apply them, the channel holds back the next acks
// (rabbit_fifo_client's "slow" state) and sends them, merged, when the
// queue has applied enough of the earlier ones. A channel that closes in
// the meantime drops what it holds back (rabbit_quorum_queue:close does
// nothing with it), and the queue returns those messages, acked and
// committed, for redelivery. A synchronous round trip such as basic.qos
// does not help: the channel answers it without the queue.
//
// So awaitSettles makes two round trips through the queue on the channel:
// it consumes with zero credit (x-credit, so that nothing is delivered;
// the queue applies the checkout, which replies only after the queue has
// applied, and told the channel about, every command the channel sent
// before) and then cancels that consumer. The broker's channel takes the
// cancel only after it has read those notices, and on reading them it
// sends what it held back; the channel close that follows the cancel-ok
// reaches the queue after it. Like Stop's cancel, it waits for the
// broker's answers (the connection's heartbeat bounds that) and must not
// run concurrently with another call on the channel.
func (s *Source) awaitSettles(c *consumer) error {
	return c.ch.send(func() error {
		tag := c.tag + "-settled"
		args := amqp.Table{"x-credit": amqp.Table{"credit": int64(0), "drain": false}}
		in, err := c.ch.Consume(s.b.opts.Queue, tag, false, false, false, false, args)
		if err != nil {
			return fmt.Errorf("consume with no credit: %w", err)
		}
		err = c.ch.Cancel(tag, false)
		// A broker that ignores x-credit may have delivered some: hand
		// them back. The deliveries channel closes on the cancel-ok, or
		// when the channel closes.
		for d := range in {
			d.Nack(false, true)
		}
		if err != nil {
			return fmt.Errorf("cancel the consumer with no credit: %w", err)
		}
		return nil
	})
}
