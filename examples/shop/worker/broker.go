package worker

import (
	"context"
	"errors"
	"time"
)

// Subjects (NATS subjects, RabbitMQ routing keys) the shop worker consumes.
const (
	SubjectOrderPlaced    = "shop.orders.placed"
	SubjectUserRegistered = "shop.users.registered"
)

var (
	// ErrSourceStopped is returned by a Source's Fetch after Stop.
	ErrSourceStopped = errors.New("worker: source stopped")
	// ErrAlreadySettled is returned, unwrapped, by a Delivery's Ack, Nak,
	// DeadLetter and Drop, and by an Extender's Extend, once the delivery
	// has been settled: the first settle that succeeds wins, and a failed
	// one may be tried again.
	ErrAlreadySettled = errors.New("worker: already settled")
	// ErrDeadLetterRefused is wrapped by a Delivery's DeadLetter when the
	// broker refused the dead-letter copy for good: trying again cannot
	// help, and the delivery is left unsettled for Drop.
	ErrDeadLetterRefused = errors.New("worker: the broker refused the dead-letter copy")
)

// Broker is one long-lived connection to the shop's message broker, as a
// program that runs the worker wires it: the Source the worker pulls from,
// the Publisher that load generators publish with, and what an operator
// asks. Packages natsqueue and rabbitqueue implement it. Its methods are
// safe for concurrent use.
type Broker interface {
	// Source opens a consumer of the worker's subjects (creating the
	// broker's side of it where needed). Several Sources, of one Broker
	// or of several processes, share the messages.
	Source(ctx context.Context) (Source, error)
	// Publisher returns a Publisher through this connection. It is
	// cheap, and valid until Close.
	Publisher() Publisher
	// Pending returns how many of the worker's messages are not yet
	// settled: those waiting to be delivered plus those delivered and
	// not yet acked, dead-lettered or dropped. A broker that cannot see
	// the deliveries other connections hold (RabbitMQ) counts those of
	// its own Sources only.
	Pending(ctx context.Context) (int64, error)
	// DeadLetters returns the messages in the dead letter, oldest first,
	// and leaves them there. It is meant for operators and tests, not for
	// large volumes.
	DeadLetters(ctx context.Context) ([]DeadLetter, error)
	// Address is the broker's URL with any password replaced by ***, for
	// logs and summaries.
	Address() string
	// Close closes the connection, so that settles and publishes still
	// buffered reach the broker first. Call it last, after the Sources
	// are stopped and every delivery is settled. It blocks at most until
	// ctx is done and is idempotent.
	Close(ctx context.Context) error
}

// Delivery is one message handed to the worker by a broker. The worker
// settles each delivery exactly once, by Ack, Nak, DeadLetter or Drop,
// always with a context that shutdown does not cancel; a settle after one
// that succeeded returns ErrAlreadySettled.
type Delivery interface {
	// Subject is the message's subject or routing key.
	Subject() string
	// Data is the message body.
	Data() []byte
	// Delivered is how many times the broker has delivered the message,
	// 1 the first time.
	Delivered() int
	// Ack tells the broker the message is done, and waits for the broker to
	// confirm it where the protocol allows.
	Ack(ctx context.Context) error
	// Nak hands the message back for redelivery after delay (0: at once).
	Nak(ctx context.Context, delay time.Duration) error
	// DeadLetter moves the message, with reason, to the dead letter; it is
	// never redelivered. When the broker refuses the copy for good (it is
	// over the broker's size limit, or the dead letter does not take it),
	// DeadLetter returns an error wrapping ErrDeadLetterRefused and leaves
	// the delivery unsettled, so that the worker can Drop it.
	DeadLetter(ctx context.Context, reason string) error
	// Drop settles the message so that the broker never delivers it again,
	// without a copy in the dead letter: NATS terminates it (with reason,
	// where the server takes one), RabbitMQ rejects it without requeue (to
	// the queue's own dead-letter exchange, if it has one). The worker
	// drops a message only after its dead-letter copy was refused, and logs
	// and counts it.
	Drop(ctx context.Context, reason string) error
}

// Source is a broker's consumer side, pulled by the worker.
type Source interface {
	// Fetch waits up to maxWait (or until ctx is done) for deliveries and
	// returns up to n of them; none when the wait ends empty.
	Fetch(ctx context.Context, n int, maxWait time.Duration) ([]Delivery, error)
	// Stop stops intake: after it returns no more deliveries arrive, and
	// any the broker had already pushed to this process but Fetch had not
	// returned are handed back at once. It is idempotent.
	Stop(ctx context.Context) error
}

// Message is one message to publish.
type Message struct {
	Subject string
	// ID deduplicates publishes where the broker can (NATS Nats-Msg-Id).
	ID   string
	Data []byte
}

// Publisher publishes messages.
type Publisher interface {
	// Publish publishes msgs in order and returns once the broker has
	// confirmed every one of them, or with the first error. A confirmed
	// message is either stored durably or, on a broker that deduplicates
	// by Message.ID, dropped as a duplicate of one it already holds; the
	// result counts each. On error it counts the messages confirmed
	// before the error.
	Publish(ctx context.Context, msgs []Message) (PublishResult, error)
}

// PublishResult is what the broker did with the messages of one Publish.
type PublishResult struct {
	// Stored is the messages the broker confirmed it stored (RabbitMQ
	// also confirms, and drops, a message that no queue is bound to
	// receive).
	Stored int
	// Duplicates is the messages the broker confirmed but dropped as
	// duplicates of an ID it already held (NATS JetStream, within the
	// stream's duplicate window). It is 0 on a broker without
	// deduplication (RabbitMQ).
	Duplicates int
}

// DeadLetter is a message found in the dead letter, with the reason the
// worker gave.
type DeadLetter struct {
	Subject string `json:"subject"`
	Reason  string `json:"reason"`
	Data    []byte `json:"data"`
}

// BatchAcker is implemented by a Source that can ack many of its
// deliveries for the cost of one round trip. The worker uses it, when
// present, to ack a group of orders placed in one transaction.
type BatchAcker interface {
	// AckBatch acks ds and waits until the broker has received the acks.
	// On error some acks may be lost: those messages come again, and the
	// worker counts them as duplicates.
	AckBatch(ctx context.Context, ds []Delivery) error
}

// Timestamped is implemented by a Delivery that knows when its message was
// published (stored by the broker). The worker uses it to measure the time
// from publish to ack.
type Timestamped interface {
	PublishedAt() time.Time
}

// Connectivity is implemented by a Source that can tell whether it is
// connected to its broker. The worker does not count time disconnected as
// idle (ExitWhenIdle): the queue may hold messages it cannot see.
type Connectivity interface {
	Connected() bool
}

// BatchExtender is implemented by a Source that can extend many of its
// deliveries (see Extender) for the cost of one round trip. The worker uses
// it, when present, to extend the messages it holds in an outage.
type BatchExtender interface {
	// ExtendBatch extends those of ds that are not settled, and waits
	// until the broker has received the requests.
	ExtendBatch(ctx context.Context, ds []Delivery) error
}

// Extender is implemented by a Delivery that its broker redelivers when it
// is not settled within a deadline (NATS's AckWait). While the database is
// down the worker holds messages without settling them; it calls Extend
// every ExtendEvery so that the broker does not hand them to another
// consumer meanwhile.
type Extender interface {
	// ExtendEvery is how often Extend must run to keep the delivery.
	ExtendEvery() time.Duration
	// Extend resets the broker's deadline for settling the delivery. It
	// returns ErrAlreadySettled once the delivery is settled.
	Extend(ctx context.Context) error
}
