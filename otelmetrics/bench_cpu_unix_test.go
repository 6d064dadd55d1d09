//go:build unix

package otelmetrics_test

import (
	"syscall"
	"time"
)

// processCPU returns the CPU time (user and system) the process has used,
// and true; BenchmarkObserver reports it per statement as cpu-ns/op, which the
// machine's other load moves much less than ns/op.
func processCPU() (time.Duration, bool) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, false
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), true
}
