package rabbitqueue

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"sync/atomic"
	"syscall"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/poolset/poolset/examples/shop/worker"
)

// Headers the dead letter copy carries.
const (
	headerReason  = "x-poolset-reason"
	headerSubject = "x-poolset-subject"
)

// Delivery is one message from a Source. It implements worker.Delivery and
// worker.Timestamped. Its methods are safe for concurrent use; it is
// settled once, by Ack, Nak, DeadLetter or Drop, and any later settling
// returns worker.ErrAlreadySettled.
type Delivery struct {
	src     *Source
	c       *consumer
	d       amqp.Delivery
	settled atomic.Bool
}

// Subject returns the routing key the message was published with.
func (d *Delivery) Subject() string { return d.d.RoutingKey }

// Data returns the message body.
func (d *Delivery) Data() []byte { return d.d.Body }

// MessageID returns the message's message-id property, which Publish sets
// from worker.Message.ID.
func (d *Delivery) MessageID() string { return d.d.MessageId }

// Delivered returns how many times the broker has delivered the message,
// 1 the first time: the quorum queue's x-delivery-count header, which
// counts earlier deliveries, plus one. Without the header it is 2 when the
// broker flags the delivery as redelivered, else 1.
func (d *Delivery) Delivered() int {
	switch n := d.d.Headers["x-delivery-count"].(type) {
	case int64:
		return int(n) + 1
	case int32:
		return int(n) + 1
	case int:
		return n + 1
	case int16:
		return int(n) + 1
	case int8:
		return int(n) + 1
	case uint8:
		return int(n) + 1
	}
	if d.d.Redelivered {
		return 2
	}
	return 1
}

// Ack tells the broker the message is done. AMQP 0-9-1 does not confirm
// acks, so Ack does not wait for the broker, and does not consult ctx: an
// ack written just before the connection drops may be lost, and the message
// delivered again. When the delivery's channel has closed, Ack returns
// ErrStaleDelivery (wrapped).
func (d *Delivery) Ack(ctx context.Context) error {
	if !d.settled.CompareAndSwap(false, true) {
		return worker.ErrAlreadySettled
	}
	return d.done("ack", func() error { return d.d.Ack(false) })
}

// Nak hands the message back to the queue for redelivery: at once when
// delay is 0, else after delay, holding it (and a prefetch slot) until then
// without blocking the caller. Stop and the Broker's Close hand back
// waiting messages at once. A failure of a delayed hand-back is logged at
// debug level: the broker redelivers the message when its channel closes.
// ctx is not consulted. When the delivery's channel has closed, Nak returns
// ErrStaleDelivery (wrapped).
func (d *Delivery) Nak(ctx context.Context, delay time.Duration) error {
	if !d.settled.CompareAndSwap(false, true) {
		return worker.ErrAlreadySettled
	}
	if delay > 0 && !d.c.ch.closed() && d.src.later(d, delay) {
		return nil
	}
	return d.nack()
}

func (d *Delivery) nack() error {
	return d.done("nak", func() error { return d.d.Nack(false, true) })
}

// handBack nacks d, with requeue, unless it was settled.
func (d *Delivery) handBack() {
	if d.settled.CompareAndSwap(false, true) {
		d.nack()
	}
}

// DeadLetter publishes a copy of the message, with reason in the
// x-poolset-reason header and the routing key in x-poolset-subject, to the
// dead letter exchange, on a channel of its own in confirm mode, waits up
// to ctx for the broker to confirm it, and then acks the message. When the
// broker refuses the copy for good (it nacks it, or closes the channel
// with 404 NOT_FOUND, 406 PRECONDITION_FAILED, 403 ACCESS_REFUSED or 311
// CONTENT_TOO_LARGE: the dead exchange is missing, the copy is over
// max_message_size, ...), DeadLetter returns an error wrapping
// worker.ErrDeadLetterRefused and leaves the delivery unsettled, for Drop.
// When the copy cannot be published for another reason (the connection
// dropped, ctx ended) the message is handed back for redelivery and
// DeadLetter returns the error. When the delivery's channel has closed,
// DeadLetter publishes nothing and returns ErrStaleDelivery (wrapped).
func (d *Delivery) DeadLetter(ctx context.Context, reason string) error {
	if !d.settled.CompareAndSwap(false, true) {
		return worker.ErrAlreadySettled
	}
	if d.c.ch.closed() {
		return d.done("dead-letter", func() error { return amqp.ErrClosed })
	}
	m := d.d
	headers := maps.Clone(m.Headers)
	if headers == nil {
		headers = amqp.Table{}
	}
	headers[headerReason] = reason
	headers[headerSubject] = m.RoutingKey
	b := d.src.b
	err := b.publishDeadLetter(ctx, m.RoutingKey, amqp.Publishing{
		Headers:         headers,
		ContentType:     m.ContentType,
		ContentEncoding: m.ContentEncoding,
		DeliveryMode:    amqp.Persistent,
		Priority:        m.Priority,
		CorrelationId:   m.CorrelationId,
		MessageId:       m.MessageId,
		Timestamp:       m.Timestamp,
		Type:            m.Type,
		AppId:           m.AppId,
		Body:            m.Body,
	})
	if errors.Is(err, worker.ErrDeadLetterRefused) {
		d.settled.Store(false) // for Drop
		return fmt.Errorf("rabbitmq: dead-letter message %q: %w", m.MessageId, err)
	}
	if err != nil {
		if nerr := d.nack(); nerr != nil {
			return errors.Join(fmt.Errorf("rabbitmq: dead-letter message %q: %w", m.MessageId, err), nerr)
		}
		return fmt.Errorf("rabbitmq: dead-letter message %q, handed back for redelivery: %w", m.MessageId, err)
	}
	return d.done("dead-letter: ack", func() error { return d.d.Ack(false) })
}

// Drop rejects the message without requeue, so that the queue never
// delivers it again; the worker drops a message whose dead-letter copy the
// broker refused (DeadLetter's worker.ErrDeadLetterRefused) (the broker moves it to the queue's own dead-letter
// exchange, if the queue has one). reason is not sent: AMQP's reject
// carries none, and the worker logs it. ctx is not consulted. When the
// delivery's channel has closed, Drop returns ErrStaleDelivery (wrapped).
func (d *Delivery) Drop(ctx context.Context, reason string) error {
	if !d.settled.CompareAndSwap(false, true) {
		return worker.ErrAlreadySettled
	}
	return d.done("drop", func() error { return d.d.Reject(false) })
}

// done sends the settling frame unless the channel has closed, and counts
// the delivery settled.
func (d *Delivery) done(op string, send func() error) error {
	defer d.c.unsettled.Add(-1)
	err := d.c.ch.send(send)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, amqp.ErrClosed) || d.c.ch.closed() || connLost(err):
		return fmt.Errorf("%w (%s message %q: %v)", ErrStaleDelivery, op, d.d.MessageId, err)
	default:
		return fmt.Errorf("rabbitmq: %s message %q: %w", op, d.d.MessageId, err)
	}
}

// connLost reports whether err is the connection failing under a write,
// as when the broker closed it a moment before the client noticed: the
// delivery's channel is gone with it, though not yet marked closed.
func connLost(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed)
}

// headerPublishedAt carries the publish time, in Unix nanoseconds.
const headerPublishedAt = "x-poolset-published-at"

// PublishedAt returns when the message was published, from the header the
// Publisher sets, or the zero time when it has none.
func (d *Delivery) PublishedAt() time.Time {
	switch v := d.d.Headers[headerPublishedAt].(type) {
	case int64:
		return time.Unix(0, v)
	case int32:
		return time.Unix(0, int64(v))
	}
	return time.Time{}
}
