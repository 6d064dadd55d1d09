//go:build !unix

package otelmetrics_test

import "time"

// processCPU reports false: outside Unix BenchmarkObserver reports no
// cpu-ns/op.
func processCPU() (time.Duration, bool) { return 0, false }
