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
// primary after the failure: a statement error on a live server (a
// deadlock, a bad row) takes the usual nak-and-retry path.

// Probe timings during an outage.
const (
	probeTimeout  = 2 * time.Second        // one ping
	probeFirst    = 100 * time.Millisecond // first pause between pings
	probeMaxPause = time.Second            // pauses double up to this
)

// outage tracks whether the database answers. While it does not, one
// prober goroutine pings it until it answers or the context the outage
// began with is done. Its methods are safe for concurrent use.
type outage struct {
	ping func(context.Context) error
	log  *slog.Logger

	mu     sync.Mutex
	up     chan struct{} // non-nil during an outage; closed when it ends
	since  time.Time     // start of the current outage
	count  int64         // outages begun
	total  time.Duration // length of the outages that ended
	prober sync.WaitGroup
}

// down reports whether the database is down, after an operation failed
// with err. During a known outage it answers at once; otherwise it pings,
// and a failed ping begins an outage. It returns false when ctx is done.
func (o *outage) down(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	if o.current() != nil {
		return true
	}
	pctx, cancel := context.WithTimeout(ctx, probeTimeout)
	perr := o.ping(pctx)
	cancel()
	if perr == nil || ctx.Err() != nil {
		return false
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.up == nil {
		o.up = make(chan struct{})
		o.since = time.Now()
		o.count++
		o.log.Warn("worker: the database does not answer; holding the messages it failed and pausing intake until it does",
			"err", err, "ping", perr)
		up := o.up
		o.prober.Go(func() { o.probe(ctx, up) })
	}
	return true
}

// probe pings until the database answers, then ends the outage, or until
// ctx is done.
func (o *outage) probe(ctx context.Context, up chan struct{}) {
	pause := probeFirst
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(pause):
		}
		pctx, cancel := context.WithTimeout(ctx, probeTimeout)
		err := o.ping(pctx)
		cancel()
		if err == nil {
			break
		}
		pause = min(2*pause, probeMaxPause)
	}
	o.mu.Lock()
	took := time.Since(o.since)
	o.total += took
	o.up = nil
	o.mu.Unlock()
	close(up)
	o.log.Info("worker: the database answers again; resuming", "down_for", took.Round(time.Millisecond))
}

// current returns the channel closed when the current outage ends, or nil
// when the database is not known to be down.
func (o *outage) current() chan struct{} {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.up
}

// wait blocks until no outage is known or ctx is done, and returns ctx's
// error in that case. While it waits, tick (if not nil) runs every
// tickEvery.
func (o *outage) wait(ctx context.Context, tickEvery time.Duration, tick func()) error {
	var ticks <-chan time.Time
	if tick != nil && tickEvery > 0 {
		t := time.NewTicker(tickEvery)
		defer t.Stop()
		ticks = t.C
	}
	for {
		up := o.current()
		if up == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-up:
		case <-ticks:
			tick()
		}
	}
}

// stats returns the number of outages begun and their total length so
// far, the current one included.
func (o *outage) stats() (int64, time.Duration, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	total := o.total
	if o.up != nil {
		total += time.Since(o.since)
	}
	return o.count, total, o.up != nil
}

// stop waits for the prober, which ends once the context it was started
// with is done.
func (o *outage) stop() { o.prober.Wait() }
