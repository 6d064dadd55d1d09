package natsqueue_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/poolset/poolset/examples/shop/natsqueue"
	"github.com/poolset/poolset/examples/shop/worker"
)

func Example() {
	dir, err := os.MkdirTemp("", "poolset-nats-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	srv, err := natsqueue.StartEmbedded(dir)
	if err != nil {
		panic(err)
	}
	defer srv.Shutdown()

	ctx := context.Background()
	b, err := natsqueue.Open(ctx, natsqueue.Options{URL: srv.URL()})
	if err != nil {
		panic(err)
	}
	// Released last, after the source is stopped and deliveries settled.
	defer b.Close(ctx)

	res, err := b.Publisher().Publish(ctx, []worker.Message{
		{Subject: worker.SubjectOrderPlaced, ID: "order-1", Data: []byte(`{"order":1}`)},
		{Subject: worker.SubjectOrderPlaced, ID: "order-1", Data: []byte(`{"order":1}`)}, // a duplicate: stored once
	})
	if err != nil {
		panic(err)
	}
	fmt.Printf("stored %d, dropped as duplicates %d\n", res.Stored, res.Duplicates)
	src, err := b.Source(ctx)
	if err != nil {
		panic(err)
	}
	ds, err := src.Fetch(ctx, 10, time.Second)
	if err != nil {
		panic(err)
	}
	src.Stop(ctx)
	for _, d := range ds {
		fmt.Println(d.Subject(), string(d.Data()), d.Delivered())
		d.Ack(ctx)
	}
	pending, err := b.Pending(ctx)
	fmt.Println("pending:", pending, err)
	// Output:
	// stored 1, dropped as duplicates 1
	// shop.orders.placed {"order":1} 1
	// pending: 0 <nil>
}
