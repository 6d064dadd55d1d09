// Package natsqueue is the shop's order queue on NATS JetStream: the
// streams that hold the shop's order and registration messages and their
// dead letters, the durable consumer the worker pulls from, and the
// publishing of those messages. It is not a general NATS package: its
// subjects, streams, headers and settle rules are the shop worker's.
//
// A [Broker] is one long-lived connection and implements worker.Broker; its
// Source (a [*Source]) pulls [*Delivery] values from a durable pull
// consumer, and its Publisher publishes with deduplication. They implement
// the interfaces of package worker, with worker's sentinel errors
// (worker.ErrAlreadySettled, worker.ErrSourceStopped,
// worker.ErrDeadLetterRefused). The package does not own what a message
// means or when it is settled (package worker), nor the order of shutdown
// (the command's release; see below).
//
// Open a Broker once and share it. The streams (by default SHOP holding
// shop.orders.placed and shop.users.registered, and SHOP_DEAD holding
// shop.deadletter.>) are created or updated by Open; the durable consumer by
// [Broker.Source]. SHOP has work-queue retention: the server removes a
// message once it is acked or terminated (dead-lettered or dropped), so it
// holds only what is not yet settled; Open migrates a SHOP of limits
// retention, made by older versions, when that loses nothing (see
// [Options].Stream). SHOP_DEAD keeps a dead letter 7 days, and 256 MiB of
// them at most, oldest dropped first ([Options].DeadMaxAge, DeadMaxBytes).
//
// # Release order
//
// Nothing is lost at shutdown if the caller releases in this order:
//
//  1. [Source.Stop]: intake stops; a Fetch in progress returns what it has.
//  2. Finish the deliveries in flight.
//  3. Settle every one of them (Ack after the DB commit, Nak(0) for the
//     unfinished) with a context that shutdown does not cancel.
//  4. Release the DB pools.
//  5. [Broker.Close], last: it drains the connection, so settles and
//     publishes still buffered reach the server, then closes it.
//
// A delivery left unsettled is not lost either: the server redelivers it
// after the consumer's AckWait (30s by default).
//
//	b, err := natsqueue.Open(ctx, natsqueue.Options{URL: "nats://127.0.0.1:4222"})
//	if err != nil {
//		return err
//	}
//	defer b.Close(context.Background())
//	src, err := b.Source(ctx)
//	if err != nil {
//		return err
//	}
//	ds, err := src.Fetch(ctx, 100, time.Second)
//
// [Embedded] runs a NATS server in-process, for tests and the demo.
package natsqueue
