package rabbitqueue

import (
	"context"
	"fmt"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/poolset/poolset/examples/shop/worker"
)

// maxOutstanding is how many publishes may wait for their confirm before
// Publish waits for the oldest.
const maxOutstanding = 1000

// Publisher publishes to the Broker's exchange on the Broker's one channel
// in confirm mode, reopened after a reconnect. It implements
// worker.Publisher and is safe for concurrent use.
type Publisher struct {
	b *Broker
}

// Publisher returns the Broker's Publisher, a *Publisher. It opens nothing: the channel
// opens at the first Publish.
func (b *Broker) Publisher() worker.Publisher { return &Publisher{b: b} }

// Publish publishes msgs, in order, as persistent messages with routing key
// Subject and message-id ID, keeping up to 1000 unconfirmed, and returns
// once the broker has confirmed them all, or with the first error: a nack,
// the channel closing, or ctx ending. After an error some messages may have
// been stored; publishing them again may duplicate them, which consumers
// detect by ID. While the connection is down, Publish waits, up to ctx, for
// the reconnect. A message whose routing key no queue is bound to is
// confirmed and dropped. RabbitMQ does not deduplicate: the result's
// Stored counts every confirmed message, before an error too, and its
// Duplicates is 0.
func (p *Publisher) Publish(ctx context.Context, msgs []worker.Message) (worker.PublishResult, error) {
	out := make([]outgoing, len(msgs))
	for i, m := range msgs {
		out[i] = outgoing{key: m.Subject, msg: amqp.Publishing{
			DeliveryMode: amqp.Persistent,
			MessageId:    m.ID,
			Body:         m.Data,
			// AMQP's timestamp has whole seconds; the header has nanoseconds.
			Headers: amqp.Table{headerPublishedAt: time.Now().UnixNano()},
		}}
	}
	n, err := p.b.publish(ctx, p.b.opts.Exchange, out)
	return worker.PublishResult{Stored: n}, err
}

type outgoing struct {
	key string
	msg amqp.Publishing
}

// publish publishes msgs to exchange on the confirm channel and waits for
// every confirm. It returns how many were confirmed, before an error too.
func (b *Broker) publish(ctx context.Context, exchange string, msgs []outgoing) (confirmed int, err error) {
	if len(msgs) == 0 {
		return 0, nil
	}
	ch, err := b.confirmChannel(ctx)
	if err != nil {
		return 0, err
	}
	type sent struct {
		i  int
		dc *amqp.DeferredConfirmation
	}
	window := make([]sent, 0, min(len(msgs), maxOutstanding))
	wait := func(s sent) error {
		ok, err := s.dc.WaitContext(ctx)
		switch {
		case err != nil:
			return fmt.Errorf("rabbitmq: publish to %s: waiting for confirm of message %d of %d: %w", exchange, s.i+1, len(msgs), err)
		case !ok && ch.closed():
			return fmt.Errorf("rabbitmq: publish to %s: channel closed before confirming message %d of %d", exchange, s.i+1, len(msgs))
		case !ok:
			return fmt.Errorf("rabbitmq: publish to %s: broker nacked message %d of %d (id %q)", exchange, s.i+1, len(msgs), msgs[s.i].msg.MessageId)
		}
		confirmed++
		return nil
	}
	for i, m := range msgs {
		if len(window) == maxOutstanding {
			if err := wait(window[0]); err != nil {
				return confirmed, err
			}
			window = window[1:]
		}
		var dc *amqp.DeferredConfirmation
		err := ch.send(func() (err error) {
			dc, err = ch.PublishWithDeferredConfirmWithContext(ctx, exchange, m.key, false, false, m.msg)
			return err
		})
		if err != nil {
			return confirmed, fmt.Errorf("rabbitmq: publish to %s: message %d of %d: %w", exchange, i+1, len(msgs), err)
		}
		window = append(window, sent{i, dc})
	}
	for _, s := range window {
		if err := wait(s); err != nil {
			return confirmed, err
		}
	}
	return confirmed, nil
}

// confirmChannel returns the publisher channel, opening it in confirm mode
// when there is none or it has closed.
func (b *Broker) confirmChannel(ctx context.Context) (*channel, error) {
	b.pubMu.Lock()
	defer b.pubMu.Unlock()
	if b.pub != nil && !b.pub.closed() {
		return b.pub, nil
	}
	b.pub = nil
	conn, err := b.connection(ctx)
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	closed := b.closed
	b.mu.Unlock()
	if closed { // Close has closed the publisher channel, or is about to
		return nil, ErrClosed
	}
	ch, err := conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("rabbitmq: open publisher channel: %w", err)
	}
	if err := ch.Confirm(false); err != nil {
		ch.Close()
		return nil, fmt.Errorf("rabbitmq: publisher channel confirm mode: %w", err)
	}
	b.pub = &channel{Channel: ch}
	return b.pub, nil
}

// publishDeadLetter publishes msg to the dead exchange with routing key
// key, on a channel of its own in confirm mode, and waits up to ctx for the
// confirm. A channel of its own, so that a channel exception is this
// copy's, and closes neither the Publisher's channel nor other copies';
// dead letters are rare, and the two round trips to open the channel
// matter little. The error wraps worker.ErrDeadLetterRefused when the
// broker refused the copy for good: a nack, or a channel exception that
// trying again cannot mend (refuses).
func (b *Broker) publishDeadLetter(ctx context.Context, key string, msg amqp.Publishing) error {
	exchange := b.opts.DeadExchange
	conn, err := b.connection(ctx)
	if err != nil {
		return err
	}
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("rabbitmq: publish to %s: open channel: %w", exchange, err)
	}
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	defer ch.Close()
	if err := ch.Confirm(false); err != nil {
		return fmt.Errorf("rabbitmq: publish to %s: confirm mode: %w", exchange, err)
	}
	dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, exchange, key, false, false, msg)
	if err != nil {
		return fmt.Errorf("rabbitmq: publish to %s: %w", exchange, err)
	}
	ok, err := dc.WaitContext(ctx)
	switch {
	case err != nil:
		return fmt.Errorf("rabbitmq: publish to %s: waiting for confirm: %w", exchange, err)
	case ok:
		return nil
	}
	// The broker nacked the copy, or the channel closed: the channel's
	// close reason, when it has one, is sent before the confirmations are
	// given up.
	select {
	case e := <-closed:
		if refuses(e) {
			return fmt.Errorf("rabbitmq: publish to %s: %w: %w", exchange, worker.ErrDeadLetterRefused, e)
		}
		if e != nil {
			return fmt.Errorf("rabbitmq: publish to %s: channel closed before confirming: %w", exchange, e)
		}
		return fmt.Errorf("rabbitmq: publish to %s: channel closed before confirming", exchange)
	default:
		return fmt.Errorf("rabbitmq: publish to %s: %w: broker nacked it", exchange, worker.ErrDeadLetterRefused)
	}
}

// refuses reports whether the broker closed a channel with e because of
// what was sent on it, for good: the exchange does not exist (404), the
// message is over max_message_size or otherwise not allowed (406), the
// user may not write to the exchange (403), the content is too large
// (311). A connection error, a lost connection, or 405 RESOURCE_LOCKED are
// not refusals.
func refuses(e *amqp.Error) bool {
	if e == nil || !e.Server {
		return false
	}
	switch e.Code {
	case amqp.NotFound, amqp.PreconditionFailed, amqp.AccessRefused, amqp.ContentTooLarge:
		return true
	}
	return false
}
