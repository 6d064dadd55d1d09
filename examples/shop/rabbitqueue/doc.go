// Package rabbitmq is poolset's RabbitMQ broker (amqp091-go): one AMQP
// connection, reconnected automatically, that the shop worker pulls
// deliveries from and publishes to.
//
// Open declares the topology idempotently: a durable topic exchange
// ("shop") and a durable quorum queue ("poolset.shop") bound to it with the
// routing keys worker.SubjectOrderPlaced and worker.SubjectUserRegistered,
// so that a user's registration stays ahead of the orders that follow it;
// and a dead letter, a durable fanout exchange ("shop.dead") with a durable
// queue ("poolset.shop.dead"), which is also the main queue's
// x-dead-letter-exchange.
//
// A Broker is opened once and shared:
//
//	b, err := rabbitmq.Open(ctx, rabbitmq.Options{URL: "amqp://guest:guest@127.0.0.1:5672/"})
//	if err != nil {
//		return err
//	}
//	defer b.Close(context.Background()) // last, after the worker has settled
//
//	src, err := b.Source(ctx) // a worker.Source
//	...
//	_, err = b.Publisher().Publish(ctx, []worker.Message{{Subject: worker.SubjectOrderPlaced, ID: id, Data: body}})
//
// Delivery is at least once. AMQP 0-9-1 does not confirm acks, so an ack
// sent just before the connection drops can be lost and the message
// delivered again; and a delivery taken from a channel that has since
// closed cannot be settled at all (Ack returns ErrStaleDelivery) because the
// broker has already requeued it. Consumers deduplicate by message ID.
package rabbitqueue
