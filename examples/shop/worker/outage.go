package worker

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// An outage is the database not answering. A message that fails because of
// one is not at fault: nak'ing it would spend its deliveries, and a backlog
// would reach the dead letter within seconds of the database going away.
// So the worker holds the message, pauses intake, and places the message
// again once the database answers; nothing is settled meanwhile.
//
// The worker tells an outage from a failed statement by pinging the
// primary after the failure, on a connection outside the pool (Pool.Ping),
// so that a pool whose connections are all busy does not pass for a dead
// server: a statement error on a live server (a deadlock, an acquire
// timeout, a bad row) takes the usual nak-and-retry path.

// Probe timings during an outage.
const (
	probeTimeout  = 2 * time.Second        // one ping
	probeFirst    = 100 * time.Millisecond // first pause between pings
	probeMaxPause = time.Second            // pauses double up to this
)

// outage tracks whether the database answers. While it does not, a prober
// goroutine pings it until it answers or the context the outage began with
// is done. The worker's keeper goes on extending the held messages
// meanwhile. Its methods are safe for concurrent use.
type outage struct {
	ping func(context.Context) error
	log  *slog.Logger

	pingMu sync.Mutex // one ping after a failure at a time: each is a connection beyond the pool

	mu    sync.Mutex
	up    chan struct{} // non-nil during an outage; closed when it ends
	since time.Time     // start of the current outage
	count int64         // outages begun
	total time.Duration // length of the outages that ended
	done  bool          // stop was called: no outage begins
	wg    sync.WaitGroup
}

// epoch returns the number of outages begun so far. An operation that
// notes it before it starts can tell, once it failed, whether an outage
// began meanwhile (and may have ended before the failure was looked at).
func (o *outage) epoch() int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.count
}

// down reports whether an operation that began at epoch and failed with
// err failed because the database does not answer: an outage is on, or
// began after epoch, or a ping fails now, which begins one. It returns
// false when ctx is done.
func (o *outage) down(ctx context.Context, err error, epoch int64) bool {
	if ctx.Err() != nil {
		return false
	}
	known := func() bool {
		o.mu.Lock()
		defer o.mu.Unlock()
		return o.up != nil || o.count > epoch
	}
	if known() {
		return true
	}
	o.pingMu.Lock()
	if known() { // an outage began while this waited for its turn
		o.pingMu.Unlock()
		return true
	}
	pctx, cancel := context.WithTimeout(ctx, probeTimeout)
	perr := o.ping(pctx)
	cancel()
	o.pingMu.Unlock()
	if perr == nil || ctx.Err() != nil {
		return false
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.up == nil && !o.done {
		o.up = make(chan struct{})
		o.since = time.Now()
		o.count++
		o.log.Warn("worker: the database does not answer; holding the messages in flight and pausing intake until it does",
			"err", err, "ping", perr)
		up := o.up
		o.wg.Go(func() { o.probe(ctx, up) })
	}
	return o.up != nil
}

// probe pings until the database answers or ctx is done, then ends the
// outage.
func (o *outage) probe(ctx context.Context, up chan struct{}) {
	pause := probeFirst
	for {
		select {
		case <-ctx.Done():
			o.end(up, false)
			return
		case <-time.After(pause):
		}
		pctx, cancel := context.WithTimeout(ctx, probeTimeout)
		err := o.ping(pctx)
		cancel()
		if err == nil {
			o.end(up, true)
			return
		}
		pause = min(2*pause, probeMaxPause)
	}
}

// end ends the outage whose channel is up: the database answered, or the
// worker is shutting down and stops asking.
func (o *outage) end(up chan struct{}, answered bool) {
	o.mu.Lock()
	took := time.Since(o.since)
	o.total += took
	o.up = nil
	o.mu.Unlock()
	close(up)
	if answered {
		o.log.Info("worker: the database answers again; resuming", "down_for", took.Round(time.Millisecond))
	} else {
		o.log.Warn("worker: shutting down while the database does not answer", "down_for", took.Round(time.Millisecond))
	}
}

// current returns the channel closed when the current outage ends, or nil
// when the database is not known to be down.
func (o *outage) current() chan struct{} {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.up
}

// wait blocks until no outage is on or ctx is done, and returns ctx's
// error in that case.
func (o *outage) wait(ctx context.Context) error {
	for {
		up := o.current()
		if up == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-up:
		}
	}
}

// stats returns the number of outages begun, their total length so far,
// the current one included, and whether one is on.
func (o *outage) stats() (int64, time.Duration, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	total := o.total
	if o.up != nil {
		total += time.Since(o.since)
	}
	return o.count, total, o.up != nil
}

// stop waits for the prober, which ends with the outage or once the
// context it began with is done. No outage begins after stop.
func (o *outage) stop() {
	o.mu.Lock()
	o.done = true
	o.mu.Unlock()
	o.wg.Wait()
}
