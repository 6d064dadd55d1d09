package rabbitqueue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/poolset/poolset"
	"github.com/poolset/poolset/examples/shop/worker"
)

var (
	// ErrClosed is returned by a Broker's methods after Close.
	ErrClosed = errors.New("rabbitmq: broker closed")
	// ErrStaleDelivery is returned (wrapped) by a Delivery's Ack, Nak and
	// DeadLetter when the channel the delivery came on has closed, as it
	// does when the connection drops. The broker has requeued the message
	// itself and delivers it again.
	ErrStaleDelivery = errors.New("rabbitmq: delivery from a closed channel; the broker redelivers it")
)

// Options configures Open. Every field but URL has a default.
type Options struct {
	// URL is amqp://user:password@host:port/vhost. Required.
	URL string
	// Exchange is the durable topic exchange messages are published to.
	// Default: "shop".
	Exchange string
	// Queue is the durable quorum queue bound to Exchange with the shop's
	// routing keys, which Sources consume. Default: "poolset.shop".
	Queue string
	// DeadExchange is the durable fanout exchange of the dead letter, and
	// Queue's x-dead-letter-exchange. Default: "shop.dead".
	DeadExchange string
	// DeadQueue is the durable queue bound to DeadExchange.
	// Default: "poolset.shop.dead".
	DeadQueue string
	// Prefetch is the most unsettled deliveries the broker pushes to one
	// Source (basic.qos prefetch count). Default: 256.
	Prefetch int
	// Logger receives connection loss and reconnects, with the URL
	// redacted. Default: slog.Default().
	Logger *slog.Logger
	// ReconnectWait is the pause between attempts to redial, or to reopen a
	// consumer, after a failure. Default: 250 ms.
	ReconnectWait time.Duration
	// DialTimeout bounds each dial: TCP connect and AMQP handshake.
	// Default: 5 s.
	DialTimeout time.Duration
	// ConnectionName is the connection_name client property, which
	// rabbitmqctl list_connections client_properties and the management UI
	// show. Default: "poolset".
	ConnectionName string
}

// Broker is one AMQP connection to RabbitMQ, redialled automatically when it
// drops, with the Sources and the Publisher opened on it. It is safe for
// concurrent use by multiple goroutines. Open it once and share it; Close it
// last, after every delivery has been settled.
type Broker struct {
	opts Options
	addr string // redacted URL
	log  *slog.Logger
	host string

	// ctx is the Broker's own background context: Close cancels it, which
	// stops the reconnect goroutine and any dial in progress.
	ctx    context.Context
	cancel context.CancelFunc
	kick   chan struct{} // asks the reconnect goroutine to check the consumers
	done   chan struct{} // closed when the reconnect goroutine returns
	tags   atomic.Uint64

	mu      sync.Mutex
	conn    *amqp.Connection // nil while disconnected
	up      chan struct{}    // closed while conn is usable
	closed  bool
	sources map[*Source]struct{}

	pubMu sync.Mutex // serialises opening the publisher channel
	pub   *channel

	closeOnce sync.Once
	closeErr  error
}

// Open dials opts.URL, declares the topology and starts the goroutine that
// redials when the connection drops, which Close ends. ctx bounds the
// dial; Options.DialTimeout bounds it too. The error names the redacted
// URL.
func Open(ctx context.Context, opts Options) (*Broker, error) {
	addr := poolset.Redact(opts.URL)
	if _, err := amqp.ParseURI(opts.URL); err != nil {
		return nil, fmt.Errorf("rabbitmq: invalid URL %s: %w", addr, err)
	}
	setDefaults(&opts)
	host, _ := os.Hostname()
	b := &Broker{
		opts:    opts,
		addr:    addr,
		log:     opts.Logger,
		host:    host,
		kick:    make(chan struct{}, 1),
		done:    make(chan struct{}),
		up:      make(chan struct{}),
		sources: make(map[*Source]struct{}),
	}
	conn, err := b.dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("rabbitmq: connect to %s: %w", addr, err)
	}
	lost := conn.NotifyClose(make(chan *amqp.Error, 1))
	if err := b.declare(conn); err != nil {
		conn.Close()
		return nil, fmt.Errorf("rabbitmq: declare topology on %s: %w", addr, err)
	}
	b.conn = conn
	close(b.up)
	b.ctx, b.cancel = context.WithCancel(context.Background())
	go b.reconnect(conn, lost) // ended and waited for by Close
	return b, nil
}

func setDefaults(o *Options) {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&o.Exchange, "shop")
	def(&o.Queue, "poolset.shop")
	def(&o.DeadExchange, "shop.dead")
	def(&o.DeadQueue, "poolset.shop.dead")
	def(&o.ConnectionName, "poolset")
	if o.Prefetch <= 0 {
		o.Prefetch = 256
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.ReconnectWait <= 0 {
		o.ReconnectWait = 250 * time.Millisecond
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = 5 * time.Second
	}
}

// withChannel runs f on a channel of its own, opened once the connection is
// up and closed after f.
func (b *Broker) withChannel(ctx context.Context, op string, f func(*amqp.Channel) error) error {
	conn, err := b.connection(ctx)
	if err != nil {
		return err
	}
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("rabbitmq: %s: open channel: %w", op, err)
	}
	defer ch.Close()
	if err := f(ch); err != nil {
		return fmt.Errorf("rabbitmq: %s: %w", op, err)
	}
	return nil
}

// Address returns the URL b was opened with, with the password replaced
// by ***.
func (b *Broker) Address() string { return b.addr }

func (b *Broker) sourceList() []*Source {
	b.mu.Lock()
	defer b.mu.Unlock()
	list := make([]*Source, 0, len(b.sources))
	for s := range b.sources {
		list = append(list, s)
	}
	return list
}

// Pending returns how many messages of the queue are not yet settled: the
// queue's ready count, as the broker reports it, plus the deliveries this
// Broker's Sources have received and not yet settled. Deliveries that other
// processes hold, or that are on the wire, are not counted.
func (b *Broker) Pending(ctx context.Context) (int64, error) {
	var ready int64
	err := b.withChannel(ctx, "pending "+b.opts.Queue, func(ch *amqp.Channel) error {
		q, err := ch.QueueDeclarePassive(b.opts.Queue, true, false, false, false, nil)
		ready = int64(q.Messages)
		return err
	})
	if err != nil {
		return 0, err
	}
	for _, s := range b.sourceList() {
		ready += int64(s.unsettled())
	}
	return ready, nil
}

// Purge removes the ready messages of the queue and of the dead letter
// queue. Messages delivered and not yet settled stay.
func (b *Broker) Purge(ctx context.Context) error {
	return b.withChannel(ctx, "purge", func(ch *amqp.Channel) error {
		for _, q := range []string{b.opts.Queue, b.opts.DeadQueue} {
			if _, err := ch.QueuePurge(q, false); err != nil {
				return fmt.Errorf("%s: %w", q, err)
			}
		}
		return nil
	})
}

// DeadLetters returns the messages in the dead letter queue, oldest first,
// and leaves them there: it gets every one and then hands them all back. A
// message dead-lettered by the broker itself (rejected, or over a delivery
// limit) has the broker's x-first-death-reason as its reason. It is meant
// for operators and tests; concurrent calls each see only the messages the
// others are not holding.
func (b *Broker) DeadLetters(ctx context.Context) ([]worker.DeadLetter, error) {
	var out []worker.DeadLetter
	err := b.withChannel(ctx, "dead letters "+b.opts.DeadQueue, func(ch *amqp.Channel) error {
		var last uint64
		defer func() {
			if last != 0 {
				ch.Nack(last, true, true)
			}
		}()
		for ctx.Err() == nil {
			d, ok, err := ch.Get(b.opts.DeadQueue, false)
			if err != nil || !ok {
				return err
			}
			last = d.DeliveryTag
			out = append(out, worker.DeadLetter{
				Subject: headerString(d.Headers, headerSubject, d.RoutingKey),
				Reason:  headerString(d.Headers, headerReason, headerString(d.Headers, "x-first-death-reason", "")),
				Data:    d.Body,
			})
		}
		return ctx.Err()
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func headerString(h amqp.Table, key, def string) string {
	if s, ok := h[key].(string); ok {
		return s
	}
	return def
}

// Close stops reconnecting, stops every Source as Stop does (handing back
// what the worker has not been given, and any Nak waiting for its delay),
// closes the channels and then the connection. Call it last, once the
// worker has settled: deliveries still unsettled become stale and the
// broker redelivers them. Close blocks until the reconnect goroutine and
// the consumers' goroutines have ended, and until the broker confirms the
// close or ctx's deadline passes (5 s without one); a reconnect in the
// middle of a broker call finishes that call first. Close is idempotent and
// safe to call from several goroutines at once: every call waits for the
// first and returns its result.
func (b *Broker) Close(ctx context.Context) error {
	b.closeOnce.Do(func() { b.closeErr = b.close(ctx) })
	return b.closeErr
}

func (b *Broker) close(ctx context.Context) error {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	b.cancel()
	<-b.done // the reconnect goroutine has returned: nothing replaces b.conn now
	var errs []error
	for _, s := range b.sourceList() {
		if err := s.shutdown(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	b.pubMu.Lock()
	if b.pub != nil {
		if err := b.pub.close(); err != nil && !errors.Is(err, amqp.ErrClosed) {
			errs = append(errs, fmt.Errorf("close publisher channel: %w", err))
		}
		b.pub = nil
	}
	b.pubMu.Unlock()
	b.mu.Lock()
	conn := b.conn
	b.conn = nil
	b.mu.Unlock()
	if conn != nil && !conn.IsClosed() {
		deadline, ok := ctx.Deadline()
		if !ok {
			deadline = time.Now().Add(5 * time.Second)
		}
		if err := conn.CloseDeadline(deadline); err != nil && !errors.Is(err, amqp.ErrClosed) {
			errs = append(errs, fmt.Errorf("close connection: %w", err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("rabbitmq: close %s: %w", b.addr, err)
	}
	return nil
}
