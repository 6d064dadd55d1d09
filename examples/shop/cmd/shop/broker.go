package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"

	"github.com/poolset/poolset"
	"github.com/poolset/poolset/examples/shop/natsqueue"
	"github.com/poolset/poolset/examples/shop/rabbitqueue"
	"github.com/poolset/poolset/examples/shop/worker"
	"github.com/poolset/poolset/release"
)

// openBroker connects to cfg.Broker, or starts the embedded NATS server
// under cfg.Data when it is empty, and registers each release in rel as it
// acquires it: the embedded server first, so that it stops after the
// connection closes.
func openBroker(ctx context.Context, cfg config, rel *release.Stack, log *slog.Logger) (worker.Broker, error) {
	url := cfg.Broker
	switch {
	case url == "":
		srv, err := natsqueue.StartEmbedded(filepath.Join(cfg.Data, "nats"))
		if err != nil {
			return nil, fmt.Errorf("--data: start the embedded NATS server: %w", err)
		}
		rel.Add("embedded nats server", func(context.Context) error { srv.Shutdown(); return nil })
		url = srv.URL()
		fallthrough
	case strings.HasPrefix(url, "nats://"):
		b, err := natsqueue.Open(ctx, natsqueue.Options{URL: url, Logger: log, AckWait: cfg.AckWait})
		if err != nil {
			return nil, fmt.Errorf("--broker: %w", err)
		}
		rel.Add("broker nats", b.Close)
		return b, nil
	case strings.HasPrefix(url, "amqp://"), strings.HasPrefix(url, "amqps://"):
		b, err := rabbitqueue.Open(ctx, rabbitqueue.Options{URL: url, Logger: log, Prefetch: cfg.Prefetch})
		if err != nil {
			return nil, fmt.Errorf("--broker: %w", err)
		}
		rel.Add("broker rabbitmq", b.Close)
		return b, nil
	}
	return nil, usagef("--broker: want nats://host:port or amqp://user:pass@host:port/, got %s", poolset.Redact(url))
}
