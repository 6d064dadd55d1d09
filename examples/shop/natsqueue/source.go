package natsqueue

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
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
	_ worker.Source    = (*Source)(nil)
	_ worker.Delivery  = (*delivery)(nil)
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

func (s *Source) delivery(m jetstream.Msg) *delivery {
	d := &delivery{b: s.b, msg: m, subject: s.b.unprefixed(m.Subject()), delivered: 1}
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

// delivery is one JetStream message handed to the worker. Its settle
// methods are safe for concurrent use; the first to succeed wins.
type delivery struct {
	b         *Broker
	msg       jetstream.Msg
	subject   string // without the subject prefix
	delivered int
	stream    string
	seq       uint64 // stream sequence
	stored    int64  // when the stream stored it, Unix nanoseconds

	mu      sync.Mutex // held while settling
	settled bool
}

// Subject returns the subject the message was published to, without the
// broker's subject prefix.
func (d *delivery) Subject() string { return d.subject }

// Data returns the message body.
func (d *delivery) Data() []byte { return d.msg.Data() }

// Delivered returns how many times the server has delivered the message, 1
// the first time.
func (d *delivery) Delivered() int { return d.delivered }

// Ack acknowledges the message and waits, bounded by ctx (5s if ctx has no
// deadline), for the server to confirm it.
func (d *delivery) Ack(ctx context.Context) error {
	return d.settle("ack", func() error { return d.msg.DoubleAck(ctx) })
}

// Nak hands the message back for redelivery after delay, at once if delay is
// 0, and waits, bounded by ctx (5s if ctx has no deadline), until the
// server has received the request.
func (d *delivery) Nak(ctx context.Context, delay time.Duration) error {
	return d.settle("nak", func() error {
		var err error
		if delay <= 0 {
			err = d.msg.Nak()
		} else {
			err = d.msg.NakWithDelay(delay)
		}
		if err != nil {
			return err
		}
		return d.b.flush(ctx)
	})
}

// ExtendEvery returns a third of the consumer's AckWait: how often Extend
// must run to keep the delivery from being redelivered.
func (d *delivery) ExtendEvery() time.Duration { return d.b.opts.AckWait / 3 }

// Extend tells the server that the message is still being worked on
// (+WPI), which restarts its AckWait, and waits, bounded by ctx, until the
// server has received it. It fails with ErrAlreadySettled once the delivery
// is settled.
func (d *delivery) Extend(ctx context.Context) error {
	if err := d.extend(); err != nil {
		return err
	}
	return d.b.flush(ctx)
}

// extend sends +WPI for the message unless it is settled, without waiting.
func (d *delivery) extend() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.settled {
		return ErrAlreadySettled
	}
	if err := d.msg.InProgress(); err != nil {
		return fmt.Errorf("nats: extend: %w", err)
	}
	return nil
}

// DeadLetter publishes a copy of the message to
// shop.deadletter.<subject>, with reason in the Poolset-Reason header and
// the delivery count in Poolset-Delivered, waits for the server to store
// it, then terminates the message so that it is never redelivered. It is
// bounded by ctx, or by 5s for each step if ctx has no deadline. The copy's
// message ID is derived from the original's stream, sequence and time, so a
// retried DeadLetter stores one copy within the dead stream's duplicate
// window (2 minutes).
//
// The copy is the whole body or nothing: a truncated copy could not be
// replayed. When the server refuses it for good, DeadLetter returns an
// error wrapping worker.ErrDeadLetterRefused and leaves the delivery
// unsettled, for Drop: when the copy with its headers is over the server's
// max_payload (1 MiB by default; the original fits, its headers added
// push it over), over the dead stream's MaxMsgSize, or the dead stream is
// full and discards new messages (see IsRefused).
func (d *delivery) DeadLetter(ctx context.Context, reason string) error {
	return d.settle("dead letter", func() error {
		reason := oneLine(reason)
		m := nats.NewMsg(d.b.subject(deadLetterSubject + d.subject))
		m.Data = d.msg.Data()
		m.Header.Set(HeaderReason, reason)
		m.Header.Set(HeaderDelivered, strconv.Itoa(d.delivered))
		var opts []jetstream.PublishOpt
		if d.stream != "" {
			opts = append(opts, jetstream.WithMsgID(fmt.Sprintf("%s-%d-%d", d.stream, d.seq, d.stored)))
		}
		if _, err := d.b.js.PublishMsg(ctx, m, opts...); err != nil {
			if IsRefused(err) {
				return fmt.Errorf("publish %d bytes to %s: %w: %w", len(m.Data), d.b.opts.DeadStream, worker.ErrDeadLetterRefused, err)
			}
			return fmt.Errorf("publish to %s: %w", d.b.opts.DeadStream, err)
		}
		if err := d.term(reason); err != nil {
			return err
		}
		return d.b.flush(ctx)
	})
}

// IsRefused reports whether err, from a JetStream publish, is a refusal
// that no retry can overcome: the message with its headers is over the
// server's max_payload (nats.ErrMaxPayload, found by the client before
// sending), over the stream's MaxMsgSize (JetStream error 10054), or the
// stream refused to store it (error 10077: it is too large, or the stream
// is at its MaxMsgs, MaxBytes or MaxMsgsPerSubject and discards new
// messages; the server answers 10077 only for these). A timeout, a lost
// connection or a missing stream is not a refusal.
func IsRefused(err error) bool {
	if errors.Is(err, nats.ErrMaxPayload) {
		return true
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode {
		case jetstream.JSErrCodeStreamMessageExceedsMaximum, jsErrCodeStreamStoreFailed:
			return true
		}
	}
	return false
}

// jsErrCodeStreamStoreFailed is the server's JSStreamStoreFailedF, which
// jetstream does not name.
const jsErrCodeStreamStoreFailed jetstream.ErrorCode = 10077

// Drop terminates the message without a copy in the dead letter, so that
// it is never redelivered, with reason where the server takes one (2.10.4
// and later), and waits, bounded by ctx (5s if ctx has no deadline), until
// the server has received it.
func (d *delivery) Drop(ctx context.Context, reason string) error {
	return d.settle("drop", func() error {
		if err := d.term(oneLine(reason)); err != nil {
			return err
		}
		return d.b.flush(ctx)
	})
}

// term terminates the message, with reason where the server takes one.
func (d *delivery) term(reason string) error {
	var err error
	if reason != "" && serverAtLeast(d.b.nc.ConnectedServerVersion(), 2, 10, 4) {
		err = d.msg.TermWithReason(reason)
	} else {
		// Older servers ignore a term with a reason.
		err = d.msg.Term()
	}
	if err != nil {
		return fmt.Errorf("term: %w", err)
	}
	return nil
}

// oneLine returns s with its line breaks replaced by spaces, for a header.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return ' '
		}
		return r
	}, s)
}

// settle runs do unless the delivery is settled, and marks it settled when
// do succeeds; a failed settle may be retried.
func (d *delivery) settle(op string, do func() error) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.settled {
		return ErrAlreadySettled
	}
	if err := do(); err != nil {
		return fmt.Errorf("nats: %s %s: %w", op, d.subject, err)
	}
	d.settled = true
	return nil
}

// flush waits until the server has received everything sent so far,
// bounded by ctx, or by 5s if ctx has no deadline.
func (b *Broker) flush(ctx context.Context) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
	}
	if err := b.nc.FlushWithContext(ctx); err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	return nil
}

// serverAtLeast reports whether the server version v ("2.10.4") is at least
// major.minor.patch. An unknown version counts as older.
func serverAtLeast(v string, major, minor, patch int) bool {
	v, _, _ = strings.Cut(v, "-")
	f := strings.Split(v, ".")
	if len(f) != 3 {
		return false
	}
	want := [3]int{major, minor, patch}
	for i := range want {
		n, err := strconv.Atoi(f[i])
		if err != nil {
			return false
		}
		if n != want[i] {
			return n > want[i]
		}
	}
	return true
}

// AckBatch acks ds, deliveries of this source, without waiting for each
// confirmation, then flushes the connection once: it returns when the
// server has received every ack, bounded by ctx (5s if ctx has no
// deadline). It implements worker.BatchAcker.
func (s *Source) AckBatch(ctx context.Context, ds []worker.Delivery) error {
	var errs []error
	for _, wd := range ds {
		d, ok := wd.(*delivery)
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
		d, ok := wd.(*delivery)
		if !ok {
			errs = append(errs, fmt.Errorf("nats: extend batch: %T is not a delivery of this source", wd))
			continue
		}
		if err := d.extend(); err != nil && !errors.Is(err, ErrAlreadySettled) {
			errs = append(errs, err)
		}
	}
	if err := s.b.flush(ctx); err != nil {
		errs = append(errs, fmt.Errorf("nats: extend batch: %w", err))
	}
	return errors.Join(errs...)
}

// PublishedAt returns when the stream stored the message, or the zero time
// when the server did not say.
func (d *delivery) PublishedAt() time.Time {
	if d.stored == 0 {
		return time.Time{}
	}
	return time.Unix(0, d.stored)
}

// Connected reports whether the connection to the server is up. It
// implements worker.Connectivity.
func (s *Source) Connected() bool { return s.b.nc.IsConnected() }
