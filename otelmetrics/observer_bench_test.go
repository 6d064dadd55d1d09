package otelmetrics

import (
	"context"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/semconv/v1.43.0/dbconv"
)

// BenchmarkObserveWait measures one Observer call on its own: one wait
// recorded in the SDK's wait_time histogram, for one of three
// repositories, serially and from parallel goroutines (all recording
// into the same few series, the worst case for the SDK's per-series lock).
//
//	go test -run '^$' -bench BenchmarkObserveWait -count 6 ./otelmetrics
func BenchmarkObserveWait(b *testing.B) {
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	b.Cleanup(func() { mp.Shutdown(context.Background()) })
	wait, err := dbconv.NewClientConnectionWaitTime(mp.Meter(ScopeName))
	if err != nil {
		b.Fatal(err)
	}
	o := &observer{wait: wait.Inst()}
	repos := [...]string{"users", "orders", "products"}
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for i := range b.N {
			o.ObserveWait("primary", repos[i%3], time.Duration(i%1000)*time.Microsecond, false)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				o.ObserveWait("primary", repos[i%3], time.Duration(i%1000)*time.Microsecond, false)
				i++
			}
		})
	})
}
