// Package rabbitqueue is the shop's order queue on RabbitMQ (amqp091-go):
// the exchanges and queues that hold the shop's order and registration
// messages and their dead letters, one AMQP connection to them, reconnected
// automatically, that the shop worker pulls deliveries from, and the
// publishing of those messages. It is not a general RabbitMQ package: its
// topology, headers and settle rules are the shop worker's.
//
// A [Broker] implements worker.Broker; its Source (a [*Source]) hands out
// [*Delivery] values, and its Publisher publishes with confirms. They
// implement the interfaces of package worker, with worker's sentinel
// errors (worker.ErrAlreadySettled, worker.ErrSourceStopped,
// worker.ErrDeadLetterRefused). The package does not own what a message
// means or when it is settled (package worker), nor the order of shutdown
// (the command's release).
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
//	b, err := rabbitqueue.Open(ctx, rabbitqueue.Options{URL: "amqp://guest:guest@127.0.0.1:5672/"})
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
