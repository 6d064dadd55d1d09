// Package worker runs the shop's message processing: it pulls order and
// registration messages from a broker, places each order in a transaction
// on the shop's store, and settles the message only after the commit.
//
// The package owns the message formats (DecodeOrder, EncodeOrder, ...), the
// small interfaces it works through, and what happens to a message from
// fetch to settle. It does not own a broker, a database or a process: a
// [Source] and its [Delivery] values come from a broker adapter (packages
// natsqueue and rabbitqueue implement [Broker] directly), the [Store] is
// the shop (*shop.Shop implements it), and signals, flags and the release
// of connections and pools are the command's (cmd/shop).
//
// The work is in pieces, a file each:
//
//   - intake.go: fetching with back-pressure (at most a bounded number of
//     messages taken and not yet settled), decoding, registering users;
//   - place.go: grouping orders into one transaction, and placing them one
//     by one when a group fails, so that one bad order does not hold back
//     the rest; holding a message while the database does not answer;
//   - settle.go: the one path by which every message is settled, whatever
//     the outcome (ack, nak for a retry, dead letter, drop, hand back),
//     counted and logged in one place;
//   - keep.go: the messages pending (taken, not settled), extended before
//     the broker's settle deadline, and the watchdog for a hung database;
//   - outage.go: telling a database that does not answer from a failed
//     statement;
//   - figures.go: the Summary, the counters and the publish-to-ack times.
//
// Shutdown is the point of the package. When Run's ctx is done (the first
// SIGTERM), the worker stops fetching; messages already taken keep running
// on a context that is not cancelled until the drain deadline; acks and
// naks use a context of their own; whatever is still unfinished at the
// deadline (or on SkipDrain, the second signal) is nak'ed at once for
// prompt redelivery and counted as abandoned. Then Run returns, and the
// caller releases the consumers, the cache, the SQL pools and last the
// broker connection.
package worker
