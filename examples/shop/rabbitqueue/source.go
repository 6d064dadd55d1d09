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

// Source opens a consumer of the queue and returns it, a *Source. ctx
// bounds waiting for the connection. Each call opens another consumer, on
// its own channel, which the Broker's Close closes.
func (b *Broker) Source(ctx context.Context) (worker.Source, error) {
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

// Connected reports whether the broker's connection is up. It implements
// worker.Connectivity.
func (s *Source) Connected() bool {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	return s.b.conn != nil && !s.b.conn.IsClosed()
}
