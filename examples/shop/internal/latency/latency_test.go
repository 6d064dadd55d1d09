package latency_test

import (
	"testing"
	"time"

	"github.com/poolset/poolset/examples/shop/internal/latency"
)

func TestPercentile(t *testing.T) {
	sorted := []time.Duration{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	for _, c := range []struct {
		in   []time.Duration
		pct  int
		want time.Duration
	}{
		{nil, 50, 0},
		{[]time.Duration{7}, 99, 7},
		{sorted, 0, 1},
		{sorted, 50, 5},
		{sorted, 99, 9},
		{sorted, 100, 10},
	} {
		if got := latency.Percentile(c.in, c.pct); got != c.want {
			t.Errorf("Percentile(%v, %d): got %d; want %d", c.in, c.pct, got, c.want)
		}
	}
}
