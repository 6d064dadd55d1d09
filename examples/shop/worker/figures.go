package worker

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/poolset/poolset/examples/shop/internal/latency"
	"github.com/poolset/poolset/examples/shop/shop"
)

// Summary counts what a worker did. Acked = Accepted + Rejected +
// Duplicates + Registered.
type Summary struct {
	Received     int64 `json:"received"`
	Acked        int64 `json:"acked"`
	Accepted     int64 `json:"accepted"`
	Rejected     int64 `json:"rejected"`
	Duplicates   int64 `json:"duplicates"`
	Registered   int64 `json:"registered"`
	Naked        int64 `json:"naked"`
	DeadLettered int64 `json:"dead_lettered"`
	// Dropped counts messages settled without a dead-letter copy because
	// the broker refused the copy (ErrDeadLetterRefused): each is logged
	// with its reason at error level.
	Dropped int64 `json:"dropped"`
	// Abandoned counts the messages handed back unfinished (nak'ed at
	// once) because the drain deadline or SkipDrain cut the drain short.
	Abandoned    int64 `json:"abandoned"`
	SettleErrors int64 `json:"settle_errors"`
	InFlight     int64 `json:"in_flight"`
	// Held is how many messages in flight are held because the database
	// does not answer (all of them, during an outage); Outages counts the
	// times it stopped answering, and OutageTime is how long it did not,
	// in all.
	Held       int64         `json:"held"`
	Outages    int64         `json:"outages"`
	OutageTime time.Duration `json:"outage_ns"`
	// BusyRetries counts operations run again, without a nak, after they
	// met the pool's acquire timeout on a live database; Extended counts
	// the extensions of pending messages' settle deadlines; StallPings
	// counts the pings sent because nothing was settled for StallAfter;
	// Interrupted counts the statements ended by the pool's Interrupt when
	// the drain was cut short.
	BusyRetries int64 `json:"busy_retries"`
	Extended    int64 `json:"extended"`
	StallPings  int64 `json:"stall_pings"`
	Interrupted int64 `json:"interrupted"`
	// Busy is the time from the first message received to the last one
	// settled; Rate is Acked over it, in messages a second.
	Busy time.Duration `json:"busy_ns"`
	Rate float64       `json:"rate"`
	// AckLatencyP50 and AckLatencyP99 are the times from publish to ack of
	// the acked orders whose broker gives a publish time (zero otherwise).
	AckLatencyP50 time.Duration `json:"ack_latency_p50_ns"`
	AckLatencyP99 time.Duration `json:"ack_latency_p99_ns"`
	// Drained is false when the drain deadline or SkipDrain cut the drain
	// short.
	Drained bool `json:"drained"`
}

// figures are a Worker's counters and publish-to-ack times. Their methods
// are safe for concurrent use.
type figures struct {
	received, accepted, rejected, duplicates, registered  atomic.Int64
	naked, deadLettered, dropped, abandoned, settleErrors atomic.Int64
	inFlight                                              atomic.Int64 // taken and not yet settled
	busyRetries, extended, stallPings, interrupted        atomic.Int64
	firstAt, lastAt                                       atomic.Int64 // unix nanos of the first receive and the last ack or dead-lettering

	latMu     sync.Mutex
	latencies []time.Duration // publish to ack of acked orders: the last maxLatencies
	latNext   int
}

// maxLatencies bounds the publish-to-ack samples kept for the percentiles.
const maxLatencies = 1 << 16

// receivedN counts n messages received.
func (f *figures) receivedN(n int) {
	f.firstAt.CompareAndSwap(0, time.Now().UnixNano())
	f.received.Add(int64(n))
}

// finished records that a message was settled for good (acked,
// dead-lettered or dropped) now, for Busy and Rate.
func (f *figures) finished() { f.lastAt.Store(time.Now().UnixNano()) }

// placed counts an order acked after p was stored.
func (f *figures) placed(p shop.Placed) {
	f.finished()
	switch {
	case p.Duplicate:
		f.duplicates.Add(1)
	case p.Order.Status == shop.Accepted:
		f.accepted.Add(1)
	default:
		f.rejected.Add(1)
	}
}

// ackedAt records d's time from publish to ack (at), when its broker says
// when it was published.
func (f *figures) ackedAt(d Delivery, at time.Time) {
	ts, ok := d.(Timestamped)
	if !ok {
		return
	}
	pub := ts.PublishedAt()
	if pub.IsZero() {
		return
	}
	f.latMu.Lock()
	defer f.latMu.Unlock()
	if len(f.latencies) < maxLatencies {
		f.latencies = append(f.latencies, at.Sub(pub))
	} else {
		f.latencies[f.latNext] = at.Sub(pub)
		f.latNext = (f.latNext + 1) % maxLatencies
	}
}

// summary returns the counters so far; the caller adds what the outage
// tracker knows.
func (f *figures) summary() Summary {
	s := Summary{
		Received: f.received.Load(), Accepted: f.accepted.Load(), Rejected: f.rejected.Load(),
		Duplicates: f.duplicates.Load(), Registered: f.registered.Load(), Naked: f.naked.Load(),
		DeadLettered: f.deadLettered.Load(), Dropped: f.dropped.Load(), Abandoned: f.abandoned.Load(),
		SettleErrors: f.settleErrors.Load(), InFlight: f.inFlight.Load(), BusyRetries: f.busyRetries.Load(),
		Extended: f.extended.Load(), StallPings: f.stallPings.Load(), Interrupted: f.interrupted.Load(),
	}
	s.Acked = s.Accepted + s.Rejected + s.Duplicates + s.Registered
	f.latMu.Lock()
	lat := slices.Clone(f.latencies)
	f.latMu.Unlock()
	slices.Sort(lat)
	s.AckLatencyP50, s.AckLatencyP99 = latency.Percentile(lat, 50), latency.Percentile(lat, 99)
	if first, last := f.firstAt.Load(), f.lastAt.Load(); first > 0 && last > first {
		s.Busy = time.Duration(last - first)
		s.Rate = float64(s.Acked) / s.Busy.Seconds()
	}
	return s
}

// Stats returns the counters so far.
func (w *Worker) Stats() Summary {
	s := w.figs.summary()
	var on bool
	s.Outages, s.OutageTime, on = w.out.stats()
	if on {
		s.Held = s.InFlight
	}
	return s
}
