package worker

import (
	"log/slog"
	"time"
)

// Defaults of Config's fields. They are stated here once; the shop
// command's flags show them.
const (
	// DefaultConcurrency is the default of Config.Concurrency.
	DefaultConcurrency = 16
	// DefaultGroup is the default of Config.Group: up to 500 orders in one
	// transaction. It is the shop service's setting, measured in
	// docs/BENCHMARKS.md: on MariaDB with NATS, one order per transaction
	// runs at about 1,000-1,200 orders/s, groups of up to 500 at
	// 15,000-21,800, since a group costs a fixed number of statements
	// whatever its size. Grouping costs a shallow queue nothing: a group
	// holds only what one fetch returned (topped up for at most 20 ms), so
	// an order never waits for a group to fill. Set 1 where one order per
	// transaction is wanted, such as a database whose other writers
	// should not wait on a group's row locks.
	DefaultGroup = 500
	// DefaultGroupConcurrency is the default of Config.GroupConcurrency.
	DefaultGroupConcurrency = 2
	// DefaultMaxDeliver is the default of Config.MaxDeliver.
	DefaultMaxDeliver = 5
	// DefaultDrainTimeout is the default of Config.DrainTimeout: inside
	// Kubernetes' 30 s grace period.
	DefaultDrainTimeout = 20 * time.Second
)

// Config tunes a Worker. Zero fields take the documented defaults.
type Config struct {
	// Concurrency is the most transactions of one order in flight.
	// Default: DefaultConcurrency (16).
	Concurrency int
	// Group is the most orders placed in one transaction when the queue
	// is deep (each order still all or nothing). 1 places one order per
	// transaction. Default: DefaultGroup (500).
	Group int
	// GroupConcurrency is the most transactions of more than one order in
	// flight. Groups lock many product rows each, in id order: more of
	// them at once mostly wait on each other. Default:
	// DefaultGroupConcurrency (2).
	GroupConcurrency int
	// MaxDeliver is the delivery after whose failure a message goes to the
	// dead letter with its last error. Default: DefaultMaxDeliver (5).
	MaxDeliver int
	// DrainTimeout bounds the wait for in-flight messages after Run's ctx
	// is done. Default: DefaultDrainTimeout (20 s).
	DrainTimeout time.Duration
	// FetchWait is how long one fetch waits for messages. Default: 500 ms.
	FetchWait time.Duration
	// ExitWhenIdle, when positive, ends intake once nothing arrived for
	// that long, by the same path as a signal. Default: 0 (never).
	ExitWhenIdle time.Duration
	// RetryDelay is the redelivery delay after the first transient
	// failure; it doubles with each delivery, up to 5 s. Default: 100 ms.
	RetryDelay time.Duration
	// SettleTimeout bounds each ack, nak or dead-lettering. Default: 5 s.
	SettleTimeout time.Duration
	// StallAfter is how long messages may be in flight with none settled
	// before the worker pings the database on a connection of its own, to
	// tell a hung server (the ping does not answer: an outage) from slow
	// statements (it does: nothing changes). Default: 1 s.
	StallAfter time.Duration
	// BusyPause is the pause before an operation that met the pool's
	// acquire timeout on a live database runs again. Such an operation
	// spends no delivery: a busy pool is not the message's fault.
	// Default: 100 ms.
	BusyPause time.Duration
	// Logger receives the worker's logs. Default: slog.Default().
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	if c.Concurrency <= 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.Group <= 0 {
		c.Group = DefaultGroup
	}
	if c.GroupConcurrency <= 0 {
		c.GroupConcurrency = DefaultGroupConcurrency
	}
	if c.MaxDeliver <= 0 {
		c.MaxDeliver = DefaultMaxDeliver
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = DefaultDrainTimeout
	}
	if c.FetchWait <= 0 {
		c.FetchWait = 500 * time.Millisecond
	}
	if c.RetryDelay <= 0 {
		c.RetryDelay = 100 * time.Millisecond
	}
	if c.SettleTimeout <= 0 {
		c.SettleTimeout = 5 * time.Second
	}
	if c.StallAfter <= 0 {
		c.StallAfter = time.Second
	}
	if c.BusyPause <= 0 {
		c.BusyPause = 100 * time.Millisecond
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}
