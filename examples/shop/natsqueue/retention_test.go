package natsqueue_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/poolset/poolset/examples/shop/natsqueue"
	"github.com/poolset/poolset/examples/shop/worker"
)

// streamInfo returns the info of stream name on url.
func streamInfo(t testing.TB, url, name string) *jetstream.StreamInfo {
	t.Helper()
	_, js := jsConn(t, url)
	s, err := js.Stream(context.Background(), name)
	if err != nil {
		t.Fatalf("stream %s: %v", name, err)
	}
	return s.CachedInfo()
}

// waitStreamMsgs waits up to 10s for stream name to hold want messages.
func waitStreamMsgs(t testing.TB, url, name string, want uint64) {
	t.Helper()
	_, js := jsConn(t, url)
	ctx := context.Background()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatalf("stream %s: %v", name, err)
		}
		got := s.CachedInfo().State.Msgs
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("stream %s holds %d messages after 10s; want %d", name, got, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestStreamKeepsOnlyUnsettled: the work stream holds a message until it
// is settled for good (acked, in a batch or alone, dead-lettered or
// dropped), then the server removes it; a nak'ed one stays.
func TestStreamKeepsOnlyUnsettled(t *testing.T) {
	eachServer(t, func(t *testing.T, url string) {
		opts := testOptions(t, url)
		b := open(t, opts)
		publish(t, b, messages(200, "m"))
		waitStreamMsgs(t, url, opts.Stream, 200)
		src := source(t, b)
		ds := fetchN(t, src, 200)
		ctx := context.Background()
		if err := src.AckBatch(ctx, ds[:100]); err != nil {
			t.Fatalf("AckBatch: %v", err)
		}
		ack(t, ds[100:197]...)
		if err := ds[197].DeadLetter(ctx, "test"); err != nil {
			t.Fatalf("DeadLetter: %v", err)
		}
		if err := ds[198].Drop(ctx, "test"); err != nil {
			t.Fatalf("Drop: %v", err)
		}
		if err := ds[199].Nak(ctx, 0); err != nil {
			t.Fatalf("Nak: %v", err)
		}
		waitStreamMsgs(t, url, opts.Stream, 1)
		ack(t, fetchN(t, src, 1)...)
		waitStreamMsgs(t, url, opts.Stream, 0)
		waitPending(t, b, 0)

		info := streamInfo(t, url, opts.Stream)
		if got, want := info.Config.Retention, jetstream.WorkQueuePolicy; got != want {
			t.Errorf("%s retention = %v; want %v", opts.Stream, got, want)
		}
		dead := streamInfo(t, url, opts.DeadStream)
		if got, want := [3]any{dead.Config.MaxAge, dead.Config.MaxBytes, dead.Config.Discard},
			[3]any{natsqueue.DefaultDeadMaxAge, int64(natsqueue.DefaultDeadMaxBytes), jetstream.DiscardOld}; got != want {
			t.Errorf("%s MaxAge, MaxBytes, Discard = %v; want %v", opts.DeadStream, got, want)
		}
		if got := dead.State.Msgs; got != 1 {
			t.Errorf("%s holds %d messages; want 1", opts.DeadStream, got)
		}
	})
}

// oldStream creates opts.Stream as versions before work-queue retention
// did (limits retention, no limits) with the consumer Source creates, and
// publishes n messages to it.
func oldStream(t *testing.T, opts natsqueue.Options, n int) jetstream.Consumer {
	t.Helper()
	_, js := jsConn(t, opts.URL)
	ctx := context.Background()
	t.Cleanup(func() { deleteStreams(t, opts.URL, opts.Stream, opts.DeadStream) })
	orders := opts.SubjectPrefix + "." + worker.SubjectOrderPlaced
	_, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name:     opts.Stream,
		Subjects: []string{orders, opts.SubjectPrefix + "." + worker.SubjectUserRegistered},
		Storage:  jetstream.FileStorage,
	})
	if err != nil {
		t.Fatal(err)
	}
	c, err := js.CreateOrUpdateConsumer(ctx, opts.Stream, jetstream.ConsumerConfig{
		Durable:   opts.Consumer,
		AckPolicy: jetstream.AckExplicitPolicy,
		AckWait:   30 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if _, err := js.Publish(ctx, orders, []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// ackOld fetches n messages from the old stream's consumer and acks them.
func ackOld(t *testing.T, c jetstream.Consumer, n int) {
	t.Helper()
	batch, err := c.Fetch(n, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	got := 0
	for m := range batch.Messages() {
		if err := m.DoubleAck(context.Background()); err != nil {
			t.Fatal(err)
		}
		got++
	}
	if got != n {
		t.Fatalf("fetched %d from the old stream; want %d (%v)", got, n, batch.Error())
	}
}

// TestOpenMigratesLimitsStream: Open recreates a stream of limits
// retention, created by an older version, with work-queue retention when
// its consumer has acked every message; while some are not acked it
// keeps it, purging the acked ones, and the worker goes on with it.
func TestOpenMigratesLimitsStream(t *testing.T) {
	eachServer(t, func(t *testing.T, url string) {
		opts := testOptions(t, url)
		ctx := context.Background()
		c := oldStream(t, opts, 50)
		ackOld(t, c, 30)

		// 20 not acked: kept, the 30 acked purged, publishes stored.
		b, err := natsqueue.Open(ctx, opts)
		if err != nil {
			t.Fatalf("Open with 20 messages not acked: %v", err)
		}
		info := streamInfo(t, url, opts.Stream)
		if got, want := info.Config.Retention, jetstream.LimitsPolicy; got != want {
			t.Errorf("retention with 20 messages not acked = %v; want %v (kept)", got, want)
		}
		publish(t, b, messages(1, "m"))
		waitStreamMsgs(t, url, opts.Stream, 21)
		src, err := b.Source(ctx)
		if err != nil {
			t.Fatal(err)
		}
		ack(t, fetchN(t, src, 21)...)
		waitPending(t, b, 0)
		if err := src.Stop(ctx); err != nil {
			t.Fatal(err)
		}
		if err := b.Close(ctx); err != nil {
			t.Fatal(err)
		}

		// All acked: migrated.
		b = open(t, opts)
		info = streamInfo(t, url, opts.Stream)
		if got, want := info.Config.Retention, jetstream.WorkQueuePolicy; got != want {
			t.Fatalf("retention with every message acked = %v; want %v", got, want)
		}
		if got := info.State.Msgs; got != 0 {
			t.Errorf("migrated stream holds %d messages; want 0", got)
		}
		publish(t, b, messages(3, "n"))
		src = source(t, b)
		ack(t, fetchN(t, src, 3)...)
		waitStreamMsgs(t, url, opts.Stream, 0)
	})
}

// TestOpenKeepsStreamOfOtherConsumers: a limits-retention stream that
// another consumer reads is kept as it is, even empty.
func TestOpenKeepsStreamOfOtherConsumers(t *testing.T) {
	e, err := natsqueue.StartEmbedded(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Shutdown)
	opts := testOptions(t, e.URL())
	other := opts
	other.Consumer += "-other"
	oldStream(t, other, 0)
	open(t, opts)
	if got, want := streamInfo(t, opts.URL, opts.Stream).Config.Retention, jetstream.LimitsPolicy; got != want {
		t.Errorf("retention = %v; want %v (kept)", got, want)
	}
}

// TestSecondConsumerFails: the work-queue stream takes one consumer of its
// subjects, which every worker shares; a Source of another name fails.
func TestSecondConsumerFails(t *testing.T) {
	eachServer(t, func(t *testing.T, url string) {
		opts := testOptions(t, url)
		b := open(t, opts)
		source(t, b)
		source(t, b) // the same consumer again
		other := opts
		other.Consumer += "-other"
		b2 := open(t, other)
		if _, err := b2.Source(context.Background()); err == nil {
			t.Fatal("Source of a second consumer: err = nil; want an error")
		} else {
			t.Logf("Source of a second consumer: %v", err)
		}
	})
}
