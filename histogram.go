package poolset

import (
	"sort"
	"sync/atomic"
	"time"
)

// histBounds are the upper bounds of every histogram a pool keeps: a 1,
// 2.5, 5 series from 10 µs (a connection lent at once) to 25 s (well past
// the default acquire timeout), for acquire waits, holds and connects.
var histBounds = [...]time.Duration{
	10 * time.Microsecond, 25 * time.Microsecond, 50 * time.Microsecond,
	100 * time.Microsecond, 250 * time.Microsecond, 500 * time.Microsecond,
	time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond,
	10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond,
	100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond,
	time.Second, 2500 * time.Millisecond, 5 * time.Second,
	10 * time.Second, 25 * time.Second,
}

// HistogramBounds returns the upper bounds, in increasing order, of the
// buckets of every Histogram in a pool's stats (10 µs to 25 s). The slice
// is the caller's.
func HistogramBounds() []time.Duration { return append([]time.Duration(nil), histBounds[:]...) }

// histogram counts durations in the histBounds buckets. Observing is two
// atomic adds and a search of 20 bounds; it is safe for concurrent use.
type histogram struct {
	counts [len(histBounds) + 1]atomic.Int64
	sum    atomic.Int64 // nanoseconds
}

func (h *histogram) observe(d time.Duration) {
	i := sort.Search(len(histBounds), func(i int) bool { return d <= histBounds[i] })
	h.counts[i].Add(1)
	h.sum.Add(int64(d))
}

func (h *histogram) snapshot() Histogram {
	s := Histogram{Counts: make([]int64, len(h.counts)), Sum: time.Duration(h.sum.Load())}
	for i := range h.counts {
		s.Counts[i] = h.counts[i].Load()
		s.Count += s.Counts[i]
	}
	return s
}

// Histogram is a distribution of durations over the buckets whose upper
// bounds HistogramBounds gives. The fields are read one at a time while
// observations go on, so under load Count and Sum may be off by the
// observations made during the read.
type Histogram struct {
	// Counts[i] is the number of durations in bucket i: above bound i-1
	// and at most bound i; the last one counts those above every bound.
	// It is not cumulative.
	Counts []int64 `json:"counts"`
	// Count is the number of durations, Sum their total.
	Count int64         `json:"count"`
	Sum   time.Duration `json:"sum_ns"`
}

// Quantile estimates the q-quantile (0 ≤ q ≤ 1) of the durations, by
// linear interpolation within the bucket it falls in, as Prometheus's
// histogram_quantile does: the estimate is never off by more than that
// bucket's width. The last bucket has no upper bound; a quantile in it is
// reported as the highest bound. No estimate exceeds Sum (no duration can),
// so durations that were all 0 give 0. It returns 0 for an empty
// histogram.
func (h Histogram) Quantile(q float64) time.Duration {
	return min(h.quantile(q), h.Sum)
}

func (h Histogram) quantile(q float64) time.Duration {
	if h.Count == 0 || len(h.Counts) != len(histBounds)+1 {
		return 0
	}
	q = min(max(q, 0), 1)
	rank := q * float64(h.Count)
	var seen int64
	for i, c := range h.Counts {
		if c == 0 || float64(seen+c) < rank {
			seen += c
			continue
		}
		if i == len(histBounds) {
			return histBounds[i-1]
		}
		lo := time.Duration(0)
		if i > 0 {
			lo = histBounds[i-1]
		}
		frac := (rank - float64(seen)) / float64(c)
		return lo + time.Duration(frac*float64(histBounds[i]-lo))
	}
	return histBounds[len(histBounds)-1]
}

// merge adds o to h, bucket by bucket.
func (h *Histogram) merge(o Histogram) {
	if h.Counts == nil {
		h.Counts = make([]int64, len(histBounds)+1)
	}
	for i, c := range o.Counts {
		h.Counts[i] += c
	}
	h.Count += o.Count
	h.Sum += o.Sum
}
