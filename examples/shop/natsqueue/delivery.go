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

// Delivery is one JetStream message handed to the worker. It implements
// worker.Delivery, worker.Extender and worker.Timestamped. Its settle
// methods are safe for concurrent use; the first to succeed wins, and any
// later one returns worker.ErrAlreadySettled.
type Delivery struct {
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
func (d *Delivery) Subject() string { return d.subject }

// Data returns the message body.
func (d *Delivery) Data() []byte { return d.msg.Data() }

// Delivered returns how many times the server has delivered the message, 1
// the first time.
func (d *Delivery) Delivered() int { return d.delivered }

// Ack acknowledges the message and waits, bounded by ctx (5s if ctx has no
// deadline), for the server to confirm it.
func (d *Delivery) Ack(ctx context.Context) error {
	return d.settle("ack", func() error { return d.msg.DoubleAck(ctx) })
}

// Nak hands the message back for redelivery after delay, at once if delay is
// 0, and waits, bounded by ctx (5s if ctx has no deadline), until the
// server has received the request.
func (d *Delivery) Nak(ctx context.Context, delay time.Duration) error {
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
func (d *Delivery) ExtendEvery() time.Duration { return d.b.opts.AckWait / 3 }

// Extend tells the server that the message is still being worked on
// (+WPI), which restarts its AckWait, and waits, bounded by ctx, until the
// server has received it. It fails with worker.ErrAlreadySettled once the delivery
// is settled.
func (d *Delivery) Extend(ctx context.Context) error {
	if err := d.extend(); err != nil {
		return err
	}
	return d.b.flush(ctx)
}

// extend sends +WPI for the message unless it is settled, without waiting.
func (d *Delivery) extend() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.settled {
		return worker.ErrAlreadySettled
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
func (d *Delivery) DeadLetter(ctx context.Context, reason string) error {
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
func (d *Delivery) Drop(ctx context.Context, reason string) error {
	return d.settle("drop", func() error {
		if err := d.term(oneLine(reason)); err != nil {
			return err
		}
		return d.b.flush(ctx)
	})
}

// term terminates the message, with reason where the server takes one.
func (d *Delivery) term(reason string) error {
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
func (d *Delivery) settle(op string, do func() error) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.settled {
		return worker.ErrAlreadySettled
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

// PublishedAt returns when the stream stored the message, or the zero time
// when the server did not say.
func (d *Delivery) PublishedAt() time.Time {
	if d.stored == 0 {
		return time.Time{}
	}
	return time.Unix(0, d.stored)
}
