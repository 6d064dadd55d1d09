// Package latency holds the one percentile rule that the shop's figures
// share: the worker's publish-to-ack times, the mixed load's and the read
// benchmark's operation times. It owns nothing else: collecting and
// sorting the samples is each caller's.
package latency

import "time"

// Percentile returns the pct-th percentile (0 to 100) of sorted, an
// ascending slice: the element at index (len-1)*pct/100; 0 when sorted is
// empty.
func Percentile(sorted []time.Duration, pct int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[(len(sorted)-1)*pct/100]
}
