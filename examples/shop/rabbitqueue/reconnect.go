package rabbitqueue

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/poolset/poolset/examples/shop/worker"
)

// dial connects and completes the AMQP handshake within DialTimeout; ctx
// ending interrupts it.
func (b *Broker) dial(ctx context.Context) (*amqp.Connection, error) {
	timeout := b.opts.DialTimeout
	props := amqp.NewConnectionProperties()
	props.SetClientConnectionName(b.opts.ConnectionName)
	stop := func() bool { return true }
	cfg := amqp.Config{
		Properties: props,
		// Dial is called synchronously by DialConfig, before the handshake,
		// whose deadline DialConfig clears once the connection is open.
		Dial: func(network, addr string) (net.Conn, error) {
			d := net.Dialer{Timeout: timeout}
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			if err := c.SetDeadline(time.Now().Add(timeout)); err != nil {
				c.Close()
				return nil, err
			}
			stop = context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
			return c, nil
		},
	}
	conn, err := amqp.DialConfig(b.opts.URL, cfg)
	if !stop() { // ctx ended during the handshake
		if err == nil {
			conn.CloseDeadline(time.Now())
		}
		return nil, ctx.Err()
	}
	return conn, err
}

// declare declares the topology, idempotently, on a channel of its own.
func (b *Broker) declare(conn *amqp.Connection) error {
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	o := b.opts
	if err := ch.ExchangeDeclare(o.Exchange, "topic", true, false, false, false, nil); err != nil {
		return fmt.Errorf("exchange %s: %w", o.Exchange, err)
	}
	if err := ch.ExchangeDeclare(o.DeadExchange, "fanout", true, false, false, false, nil); err != nil {
		return fmt.Errorf("exchange %s: %w", o.DeadExchange, err)
	}
	if _, err := ch.QueueDeclare(o.DeadQueue, true, false, false, false, nil); err != nil {
		return fmt.Errorf("queue %s: %w", o.DeadQueue, err)
	}
	if err := ch.QueueBind(o.DeadQueue, "", o.DeadExchange, false, nil); err != nil {
		return fmt.Errorf("bind %s to %s: %w", o.DeadQueue, o.DeadExchange, err)
	}
	args := amqp.Table{"x-queue-type": "quorum", "x-dead-letter-exchange": o.DeadExchange}
	if _, err := ch.QueueDeclare(o.Queue, true, false, false, false, args); err != nil {
		return fmt.Errorf("queue %s: %w", o.Queue, err)
	}
	for _, key := range []string{worker.SubjectOrderPlaced, worker.SubjectUserRegistered} {
		if err := ch.QueueBind(o.Queue, key, o.Exchange, false, nil); err != nil {
			return fmt.Errorf("bind %s to %s with %s: %w", o.Queue, o.Exchange, key, err)
		}
	}
	return nil
}

// reconnect is the Broker's one background goroutine. It waits for the
// connection to drop, or for a Source's consumer to end, and then redials,
// redeclares and reopens consumers, every ReconnectWait until it succeeds.
// Close ends it by cancelling b.ctx and waits for it on b.done.
func (b *Broker) reconnect(conn *amqp.Connection, lost chan *amqp.Error) {
	defer close(b.done)
	for {
		var cause *amqp.Error
		select {
		case <-b.ctx.Done():
			return
		case cause = <-lost:
			lost = nil
		case <-b.kick:
		}
		for attempt := 1; ; attempt++ {
			var err error
			if conn, lost, err = b.repair(conn, lost, cause); err == nil {
				break
			} else if b.ctx.Err() != nil {
				return // Close interrupted the attempt
			} else if attempt == 1 {
				b.log.Warn("rabbitmq: recovery failed; retrying", "url", b.addr, "every", b.opts.ReconnectWait, "err", err)
			} else {
				b.log.Debug("rabbitmq: recovery failed", "url", b.addr, "attempt", attempt, "err", err)
			}
			t := time.NewTimer(b.opts.ReconnectWait)
			select {
			case <-b.ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
	}
}

// repair redials when conn has closed (conn is nil after a failed redial)
// and reopens the consumer of every Source that lost it. It returns the
// connection in use and its close notification.
func (b *Broker) repair(conn *amqp.Connection, lost chan *amqp.Error, cause *amqp.Error) (*amqp.Connection, chan *amqp.Error, error) {
	if conn != nil && conn.IsClosed() {
		if cause == nil {
			select {
			case cause = <-lost:
			default:
			}
		}
		b.markDown(conn)
		b.log.Warn("rabbitmq: connection lost; reconnecting", "url", b.addr, "err", cause)
		conn, lost = nil, nil
	}
	if conn == nil {
		nc, err := b.dial(b.ctx)
		if err != nil {
			return nil, nil, err
		}
		nlost := nc.NotifyClose(make(chan *amqp.Error, 1))
		if err := b.declare(nc); err != nil {
			nc.Close()
			return nil, nil, fmt.Errorf("declare topology: %w", err)
		}
		b.mu.Lock()
		if b.closed {
			b.mu.Unlock()
			nc.Close()
			return nil, nil, ErrClosed
		}
		b.conn = nc
		close(b.up)
		b.mu.Unlock()
		b.log.Info("rabbitmq: reconnected", "url", b.addr)
		conn, lost = nc, nlost
	}
	for _, s := range b.sourceList() {
		if err := s.ensureConsumer(conn); err != nil && !errors.Is(err, errStopped) {
			if ae := (*amqp.Error)(nil); errors.As(err, &ae) && ae.Code == amqp.NotFound {
				// Someone deleted the queue: declare it again for the next try.
				if derr := b.declare(conn); derr != nil {
					err = errors.Join(err, fmt.Errorf("declare topology: %w", derr))
				}
			}
			return conn, lost, fmt.Errorf("consume %s: %w", b.opts.Queue, err)
		}
	}
	return conn, lost, nil
}

// markDown records that conn has closed, so that callers wait for the next.
func (b *Broker) markDown(conn *amqp.Connection) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if conn != nil && b.conn == conn {
		b.conn = nil
		b.up = make(chan struct{})
	}
}

// wake asks the reconnect goroutine to look at the consumers. It does not
// block.
func (b *Broker) wake() {
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

// connection returns the open connection, waiting for a reconnect until ctx
// is done.
func (b *Broker) connection(ctx context.Context) (*amqp.Connection, error) {
	for {
		b.mu.Lock()
		conn, up, closed := b.conn, b.up, b.closed
		b.mu.Unlock()
		if closed {
			return nil, ErrClosed
		}
		if conn != nil && !conn.IsClosed() {
			return conn, nil
		}
		if conn != nil {
			b.markDown(conn)
			b.wake()
			continue
		}
		select {
		case <-up:
		case <-ctx.Done():
			return nil, fmt.Errorf("rabbitmq: waiting for the connection to %s: %w", b.addr, ctx.Err())
		case <-b.ctx.Done():
			return nil, ErrClosed
		}
	}
}
