package otelmetrics_test

import (
	"context"
	"testing"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/poolset/poolset/otelmetrics"
)

// BenchmarkObserver measures what the Observer adds to a statement: a
// point read through a Handle on a SQLite set's primary (one connection,
// so each statement is one wait, one hold and no connect), without and
// with otelmetrics reporting to an SDK MeterProvider with a ManualReader
// (never collected during the run). Each statement costs two Observer
// calls: ObserveWait and ObserveHold. Besides ns/op it reports
// cpu-ns/op, the process's CPU time per statement, which the machine's
// other load moves less.
//
//	go test -run '^$' -bench BenchmarkObserver -count 6 ./otelmetrics
func BenchmarkObserver(b *testing.B) {
	for _, withOTel := range []bool{false, true} {
		name := "without"
		if withOTel {
			name = "with"
		}
		b.Run(name, func(b *testing.B) {
			ctx := context.Background()
			set := openSQLite(b)
			if withOTel {
				mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
				b.Cleanup(func() { mp.Shutdown(ctx) })
				m, err := otelmetrics.New(set, mp)
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { m.Close() })
			}
			h := set.Handle("users")
			if _, err := h.ExecContext(ctx, "INSERT INTO t (id, v) VALUES (1, 'ada')"); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			cpu0, cpuOK := processCPU()
			var v string
			for range b.N {
				if err := h.QueryRowContext(ctx, "SELECT v FROM t WHERE id = 1").Scan(&v); err != nil {
					b.Fatal(err)
				}
			}
			if cpu1, ok := processCPU(); cpuOK && ok {
				b.ReportMetric(float64(cpu1-cpu0)/float64(b.N), "cpu-ns/op")
			}
		})
	}
}
