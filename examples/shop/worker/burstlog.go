package worker

import (
	"log/slog"
	"sort"
	"sync"
	"time"
)

// burstLogEvery is the most often burstLog writes a line for one kind of
// failure.
const burstLogEvery = time.Second

// burstLog logs failed settles (acks, naks, hand-backs, dead-lettering,
// extensions) at most once a second per kind, as one line with their count
// and the last error: after a broker restart hundreds of acks fail at once,
// and a line for each buries everything else. The first failure after a
// quiet second is logged at once; those that follow within the second are
// logged together when it ends, by a timer that flush stops. It is safe for
// concurrent use.
type burstLog struct {
	log *slog.Logger

	mu     sync.Mutex
	counts map[string]int
	last   map[string]error
	logged time.Time   // when the last line was written
	timer  *time.Timer // pending flush of what the last second held, or nil
}

func newBurstLog(log *slog.Logger) *burstLog {
	return &burstLog{log: log, counts: make(map[string]int), last: make(map[string]error)}
}

// add records n messages whose settle op ("ack", "nak", ...) failed with err.
func (b *burstLog) add(op string, n int, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.counts[op] += n
	b.last[op] = err
	if wait := burstLogEvery - time.Since(b.logged); wait > 0 {
		if b.timer == nil {
			b.timer = time.AfterFunc(wait, b.flush)
		}
		return
	}
	b.writeLocked()
}

// flush writes what has not been logged yet and stops the pending timer.
func (b *burstLog) flush() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.timer != nil {
		b.timer.Stop()
		b.timer = nil
	}
	b.writeLocked()
}

func (b *burstLog) writeLocked() {
	if len(b.counts) == 0 {
		return
	}
	ops := make([]string, 0, len(b.counts))
	for op := range b.counts {
		ops = append(ops, op)
	}
	sort.Strings(ops)
	for _, op := range ops {
		b.log.Warn("worker: "+op+" failed; the broker delivers those messages again (one already placed counts as a duplicate)",
			"messages", b.counts[op], "err", b.last[op])
	}
	clear(b.counts)
	clear(b.last)
	b.logged = time.Now()
}
