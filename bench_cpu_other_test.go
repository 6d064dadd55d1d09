//go:build !unix

package poolset_test

import "time"

// processCPU reports false: outside Unix BenchmarkPointRead reports no
// cpu-ns/op.
func processCPU() (time.Duration, bool) { return 0, false }
