package natsqueue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/poolset/poolset"
	"github.com/poolset/poolset/examples/shop/worker"
)

// Header names set on dead letters.
const (
	// HeaderReason holds the reason the worker gave for dead-lettering.
	HeaderReason = "Poolset-Reason"
	// HeaderDelivered holds how many times the message had been delivered
	// when it was dead-lettered.
	HeaderDelivered = "Poolset-Delivered"
)

// deadLetterSubject is the subject prefix of dead letters; the original
// subject follows it.
const deadLetterSubject = "shop.deadletter."

// Defaults of Options.DeadMaxAge and Options.DeadMaxBytes.
const (
	DefaultDeadMaxAge   = 7 * 24 * time.Hour
	DefaultDeadMaxBytes = 256 << 20
)

// Options configures Open. Only URL is required.
type Options struct {
	// URL is the server to connect to, nats://[user:password@]host:port; a
	// comma-separated list names several servers of one cluster. Use
	// Embedded.URL for the in-process server. Required.
	URL string
	// Stream is the JetStream stream holding the worker's subjects
	// shop.orders.placed and shop.users.registered, in file storage, with
	// work-queue retention: a message stays until the consumer acks (or
	// terminates) it, then the server removes it. Open creates it, or
	// updates it to this configuration.
	//
	// A stream of an older version has limits retention, which keeps
	// every message for ever and cannot be changed in place. Open then
	// migrates it when that loses nothing: it moves the stream's subjects
	// aside for the moment (a publish meanwhile fails with no responders,
	// after nats.go's retries, rather than being stored and lost), purges
	// the messages the consumer has acked, and, if nothing is left and no
	// other consumer reads the stream, deletes it and creates it anew
	// (the consumer goes with it; Source creates it again). Otherwise it
	// gives the stream its subjects back, keeps it with limits retention,
	// and logs a warning with the count of messages not acked: a later
	// Open migrates it once the worker has drained it, or the operator
	// can delete it (nats stream rm). Versions before work-queue
	// retention cannot open the new stream (retention cannot be changed):
	// to go back to one, delete the stream once drained. Default: "SHOP".
	Stream string
	// DeadStream is the stream holding dead letters, subject
	// shop.deadletter.>: a dead-lettered message is published to
	// shop.deadletter.<original subject> with its reason in the
	// Poolset-Reason header. It keeps a dead letter DeadMaxAge, and at
	// most DeadMaxBytes of them, dropping the oldest first. Open creates
	// or updates it (lowering a limit drops the oldest dead letters over
	// it at once). Default: "SHOP_DEAD".
	DeadStream string
	// DeadMaxAge is how long the dead stream keeps a dead letter. The
	// server reserves nothing for it. Default: 7 days; negative: for
	// ever.
	DeadMaxAge time.Duration
	// DeadMaxBytes bounds the dead stream's size: beyond it the oldest
	// dead letters are dropped. The server reserves this much of its
	// JetStream file store for the stream. Default: 256 MiB; negative:
	// no bound.
	DeadMaxBytes int64
	// Consumer is the name of the durable pull consumer of Stream, created
	// or updated by Broker.Source with explicit acks, no limit on
	// redeliveries (the worker decides when to dead-letter) and the
	// worker's two subjects as filter. Every worker shares this one
	// consumer: the work-queue stream takes no second consumer of the
	// same subjects, so a Source of another name on the same Stream fails.
	// Default: "poolset-worker".
	Consumer string
	// AckWait is how long the server waits for a delivery to be settled
	// before it redelivers it. Default: 30s.
	AckWait time.Duration
	// MaxAckPending is how many deliveries may be unsettled at once; the
	// server delivers no more until some are settled. Default: 20000.
	MaxAckPending int
	// SubjectPrefix, when set, is put with a dot before every subject the
	// broker uses (stream subjects, publishes, dead letters), so that
	// several installations or test runs can share one server without
	// their streams overlapping. Deliveries and dead letters report
	// subjects without it. Default: none.
	SubjectPrefix string
	// Name is the connection name the server shows. Default: "poolset".
	Name string
	// Logger receives disconnect, reconnect and asynchronous error events
	// of the connection, with redacted URLs. Default: slog.Default().
	Logger *slog.Logger
}

func (o Options) withDefaults() (Options, error) {
	if strings.TrimSpace(o.URL) == "" {
		return o, errors.New("nats: open: no URL")
	}
	if o.Stream == "" {
		o.Stream = "SHOP"
	}
	if o.DeadStream == "" {
		o.DeadStream = "SHOP_DEAD"
	}
	if o.Stream == o.DeadStream {
		return o, fmt.Errorf("nats: open: stream and dead stream are both %q", o.Stream)
	}
	if o.Consumer == "" {
		o.Consumer = "poolset-worker"
	}
	if o.DeadMaxAge == 0 {
		o.DeadMaxAge = DefaultDeadMaxAge
	}
	if o.DeadMaxBytes == 0 {
		o.DeadMaxBytes = DefaultDeadMaxBytes
	}
	if o.AckWait <= 0 {
		o.AckWait = 30 * time.Second
	}
	if o.MaxAckPending <= 0 {
		o.MaxAckPending = 20000
	}
	o.SubjectPrefix = strings.Trim(o.SubjectPrefix, ".")
	if o.Name == "" {
		o.Name = "poolset"
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o, nil
}

// Broker is one connection to a NATS server with JetStream. It is safe for
// concurrent use by multiple goroutines, and meant to be opened once and
// shared by the worker's Source and every Publisher. While the server is
// unreachable the connection reconnects without limit, every 250ms.
type Broker struct {
	opts Options
	nc   *nats.Conn
	js   jetstream.JetStream

	closed     chan struct{} // closed by the connection's Closed callback
	closedOnce sync.Once
	closeOnce  sync.Once
	closeErr   error
}

// Open connects to opts.URL and creates or updates the streams opts.Stream
// and opts.DeadStream. It blocks until both exist; connecting is bounded by
// 2s per server, or less if ctx's deadline is nearer. The connection
// reconnects without limit once it has been established, but Open fails at
// once if the first connect fails. Errors name the URL with any password or
// token replaced by ***.
func Open(ctx context.Context, opts Options) (*Broker, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	where := poolset.Redact(o.URL)
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("nats: open %s: %w", where, err)
	}
	timeout := nats.DefaultTimeout
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < timeout {
		timeout = time.Until(dl)
	}
	b := &Broker{opts: o, closed: make(chan struct{})}
	log := o.Logger
	nc, err := nats.Connect(o.URL,
		nats.Name(o.Name),
		nats.Timeout(timeout),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond),
		nats.RetryOnFailedConnect(false),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil { // nil when the connection was closed on purpose
				log.Warn("nats: disconnected", "server", where, "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("nats: reconnected", "server", nc.ConnectedUrlRedacted())
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			if sub != nil {
				log.Error("nats: async error", "server", where, "subject", sub.Subject, "err", err)
				return
			}
			log.Error("nats: async error", "server", where, "err", err)
		}),
		nats.ClosedHandler(func(*nats.Conn) {
			b.closedOnce.Do(func() { close(b.closed) })
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("nats: connect %s: %w", where, err)
	}
	b.nc = nc
	b.js, err = jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(4096),
		jetstream.WithPublishAsyncTimeout(30*time.Second),
	)
	if err == nil {
		err = b.ensureStreams(ctx)
	}
	if err != nil {
		nc.Close()
		<-b.closed
		return nil, fmt.Errorf("nats: open %s: %w", where, err)
	}
	return b, nil
}

// subject returns s with the subject prefix.
func (b *Broker) subject(s string) string {
	if b.opts.SubjectPrefix == "" {
		return s
	}
	return b.opts.SubjectPrefix + "." + s
}

// unprefixed returns s without the subject prefix.
func (b *Broker) unprefixed(s string) string {
	if b.opts.SubjectPrefix == "" {
		return s
	}
	return strings.TrimPrefix(s, b.opts.SubjectPrefix+".")
}

// Source creates or updates the durable pull consumer opts.Consumer and
// returns a *Source reading from it. Several Sources of one Broker, or of
// several processes, share the consumer's deliveries.
func (b *Broker) Source(ctx context.Context) (worker.Source, error) {
	cfg := jetstream.ConsumerConfig{
		Durable:       b.opts.Consumer,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       b.opts.AckWait,
		MaxAckPending: b.opts.MaxAckPending,
		MaxDeliver:    -1,
		FilterSubjects: []string{
			b.subject(worker.SubjectOrderPlaced),
			b.subject(worker.SubjectUserRegistered),
		},
	}
	c, err := b.js.CreateOrUpdateConsumer(ctx, b.opts.Stream, cfg)
	if errors.Is(err, jetstream.ErrConsumerMultipleFilterSubjectsNotSupported) {
		// Servers before 2.10 filter on one subject at most. The stream
		// holds only these two subjects, so the consumer takes it whole.
		cfg.FilterSubjects = nil
		c, err = b.js.CreateOrUpdateConsumer(ctx, b.opts.Stream, cfg)
	}
	if err != nil {
		return nil, fmt.Errorf("nats: consumer %s of stream %s: %w", b.opts.Consumer, b.opts.Stream, err)
	}
	return newSource(b, c), nil
}

// Publisher returns a *Publisher publishing through b. It is cheap; the
// Publisher is valid until b is closed.
func (b *Broker) Publisher() worker.Publisher { return &Publisher{b: b} }

// Address returns the URL b was opened with, with any password or token
// replaced by ***.
func (b *Broker) Address() string { return poolset.Redact(b.opts.URL) }

// DeadLetters returns every message in the dead stream, oldest first. It
// reads them one request each and is meant for tests and the command line,
// not for large streams.
func (b *Broker) DeadLetters(ctx context.Context) ([]worker.DeadLetter, error) {
	s, err := b.js.Stream(ctx, b.opts.DeadStream)
	if err != nil {
		return nil, fmt.Errorf("nats: dead letters: stream %s: %w", b.opts.DeadStream, err)
	}
	st := s.CachedInfo().State
	if st.Msgs == 0 {
		return nil, nil
	}
	var out []worker.DeadLetter
	prefix := b.subject(deadLetterSubject)
	for seq := st.FirstSeq; seq <= st.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue // deleted
		}
		if err != nil {
			return out, fmt.Errorf("nats: dead letters: message %d of %s: %w", seq, b.opts.DeadStream, err)
		}
		out = append(out, worker.DeadLetter{
			Subject: strings.TrimPrefix(m.Subject, prefix),
			Reason:  m.Header.Get(HeaderReason),
			Data:    m.Data,
		})
	}
	return out, nil
}

// Pending returns how many messages of the stream the durable consumer has
// not yet had settled: those not delivered yet plus those delivered and
// unsettled, by any process. Before Source has created the consumer it is
// the number of messages in the stream.
func (b *Broker) Pending(ctx context.Context) (int64, error) {
	c, err := b.js.Consumer(ctx, b.opts.Stream, b.opts.Consumer)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		s, err := b.js.Stream(ctx, b.opts.Stream)
		if err != nil {
			return 0, fmt.Errorf("nats: pending: stream %s: %w", b.opts.Stream, err)
		}
		return int64(s.CachedInfo().State.Msgs), nil
	}
	if err != nil {
		return 0, fmt.Errorf("nats: pending: consumer %s: %w", b.opts.Consumer, err)
	}
	info := c.CachedInfo() // fetched by Consumer just now
	return int64(info.NumPending) + int64(info.NumAckPending), nil
}

// Purge removes every message from both streams, for tests and benchmarks.
// Consumers stay, with nothing pending.
func (b *Broker) Purge(ctx context.Context) error {
	for _, name := range []string{b.opts.Stream, b.opts.DeadStream} {
		s, err := b.js.Stream(ctx, name)
		if err == nil {
			err = s.Purge(ctx)
		}
		if err != nil {
			return fmt.Errorf("nats: purge %s: %w", name, err)
		}
	}
	return nil
}

// Close drains the connection, so that acks and publishes still buffered
// reach the server and open subscriptions end, then closes it. It blocks
// until the connection is closed and its goroutines have ended; the drain
// is bounded by ctx (and by nats.go's drain timeout of 30s), after which
// the connection is closed without it. Close it last, after Source.Stop,
// settling the deliveries in flight and releasing the DB pools. Close is
// idempotent: later calls return the first call's result.
func (b *Broker) Close(ctx context.Context) error {
	b.closeOnce.Do(func() {
		err := b.nc.Drain()
		switch {
		case err == nil:
			select {
			case <-b.closed:
				return
			case <-ctx.Done():
				b.closeErr = fmt.Errorf("nats: close: drain: %w", ctx.Err())
			}
		case !errors.Is(err, nats.ErrConnectionClosed):
			// Such as a connection that is reconnecting: nothing can be
			// flushed.
			b.closeErr = fmt.Errorf("nats: close: drain: %w", err)
		}
		b.nc.Close()
		<-b.closed
	})
	return b.closeErr
}
