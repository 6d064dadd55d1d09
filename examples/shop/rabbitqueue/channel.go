package rabbitqueue

import (
	"sync"

	amqp "github.com/rabbitmq/amqp091-go"
)

// channel is an AMQP channel whose closing is serialised with the frames
// other goroutines send on it. amqp091-go does not serialise them: an ack
// or publish written after channel.close makes the broker close the whole
// connection (504 CHANNEL_ERROR, expected 'channel.open').
type channel struct {
	*amqp.Channel
	mu      sync.RWMutex
	closing bool
}

// send runs f, which sends frames on the channel, unless the channel is
// closing or closed, when it returns amqp.ErrClosed. Calls run
// concurrently; close waits for them.
func (c *channel) send(f func() error) error {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closing || c.IsClosed() {
		return amqp.ErrClosed
	}
	return f()
}

// closed reports whether the channel is closing or closed.
func (c *channel) closed() bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.closing || c.IsClosed()
}

// close waits for sends in progress, then closes the channel. Sends after
// it return amqp.ErrClosed.
func (c *channel) close() error {
	c.mu.Lock()
	c.closing = true
	c.mu.Unlock()
	return c.Channel.Close()
}
