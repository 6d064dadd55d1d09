package natsqueue

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/poolset/poolset/examples/shop/worker"
)

// Publisher publishes messages to the broker's stream. It implements
// worker.Publisher and is safe for concurrent use by multiple goroutines.
type Publisher struct {
	b *Broker
}

// Publish publishes msgs in order without waiting for each one, with
// Message.ID as the Nats-Msg-Id header (when set), so that the stream
// stores a message once however often it is published within its
// duplicate window (2 minutes): the server confirms a repeat without
// storing it, and the result counts it in Duplicates. At most 4096
// publishes of a Broker await the server's acknowledgement at once;
// Publish waits for room beyond that. It returns once the server has
// confirmed every message, or with the first error in order, or when ctx
// is done. Messages published before an error stay published; the result
// counts the confirmations received before the error.
func (p *Publisher) Publish(ctx context.Context, msgs []worker.Message) (worker.PublishResult, error) {
	var res worker.PublishResult
	futures := make([]jetstream.PubAckFuture, 0, len(msgs))
	for _, m := range msgs {
		var opts []jetstream.PublishOpt
		if m.ID != "" {
			opts = append(opts, jetstream.WithMsgID(m.ID))
		}
		f, err := p.publishAsync(ctx, p.b.subject(m.Subject), m.Data, opts)
		if err != nil {
			return res, fmt.Errorf("nats: publish %s: %w", m.Subject, err)
		}
		futures = append(futures, f)
	}
	for i, f := range futures {
		select {
		case ack := <-f.Ok():
			if ack.Duplicate {
				res.Duplicates++
			} else {
				res.Stored++
			}
		case err := <-f.Err():
			return res, fmt.Errorf("nats: publish %s: %w", msgs[i].Subject, err)
		case <-ctx.Done():
			return res, fmt.Errorf("nats: publish: waiting for %d acks: %w", len(futures)-i, ctx.Err())
		}
	}
	return res, nil
}

// publishAsync publishes one message, waiting while too many publishes are
// unacknowledged, until ctx is done.
func (p *Publisher) publishAsync(ctx context.Context, subject string, data []byte, opts []jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		f, err := p.b.js.PublishAsync(subject, data, opts...)
		if !errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
			return f, err
		}
	}
}
