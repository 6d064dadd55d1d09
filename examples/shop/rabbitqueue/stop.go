package rabbitqueue

import (
	"context"
	"errors"
	"fmt"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Stopping a Source: Stop hands back what the worker has not been given,
// and the Naks waiting for their delay; the Broker's Close (shutdown)
// waits until the broker has taken the settles sent, then closes the
// channels.

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
