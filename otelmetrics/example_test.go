package otelmetrics_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/poolset/poolset"
	"github.com/poolset/poolset/otelmetrics"
	"github.com/poolset/poolset/sqlite"
)

// A set reported through the program's MeterProvider. Here the provider
// has a ManualReader, collected by hand; a service gives it the reader of
// its exporter (OTLP, Prometheus...) instead. Close the Metrics before the
// provider is shut down.
func ExampleNew() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "otelmetrics-example")
	defer os.RemoveAll(dir)
	primary, read, _ := sqlite.PoolConfigs(filepath.Join(dir, "shop.db"), 2)
	set, err := poolset.Open(ctx, poolset.Config{Primary: primary, Reads: []poolset.PoolConfig{read}})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer set.Close(ctx)

	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(ctx)
	m, err := otelmetrics.New(set, mp)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer m.Close()

	users := set.Handle("users")
	tx, _ := users.BeginTx(ctx, nil) // users holds one of the primary's connections
	defer tx.Rollback()

	var rm metricdata.ResourceMetrics
	reader.Collect(ctx, &rm)
	for _, md := range rm.ScopeMetrics[0].Metrics {
		if md.Name != "db.client.connection.count" {
			continue
		}
		for _, p := range md.Data.(metricdata.Sum[int64]).DataPoints {
			pool, _ := p.Attributes.Value("db.client.connection.pool.name")
			state, _ := p.Attributes.Value("db.client.connection.state")
			repo, _ := p.Attributes.Value("poolset.repository")
			if pool.AsString() == "primary" && state.AsString() == "used" {
				fmt.Printf("%s %s by %s: %d\n", md.Name, state.AsString(), repo.AsString(), p.Value)
			}
		}
	}
	// Output:
	// db.client.connection.count used by users: 1
}
