package natsqueue_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/poolset/poolset/examples/shop/natsqueue"
	"github.com/poolset/poolset/examples/shop/shoptest"
	"github.com/poolset/poolset/examples/shop/worker"
	"github.com/poolset/poolset/poolsettest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// eachServer runs f against a fresh embedded server and against the
// machine's nats-server (skipped when absent).
func eachServer(t *testing.T, f func(t *testing.T, url string)) {
	t.Run("embedded", func(t *testing.T) {
		e, err := natsqueue.StartEmbedded(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(e.Shutdown)
		f(t, e.URL())
	})
	t.Run("machine", func(t *testing.T) {
		f(t, poolsettest.NATSURL(t))
	})
}

func randomName(t testing.TB) string {
	t.Helper()
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b[:])
}

// testOptions returns options with a stream, dead stream, consumer and
// subject prefix of their own, so tests can share a server.
func testOptions(t testing.TB, url string) natsqueue.Options {
	suffix := randomName(t)
	return natsqueue.Options{
		URL:           url,
		Stream:        "T_" + suffix,
		DeadStream:    "T_" + suffix + "_DEAD",
		Consumer:      "c_" + suffix,
		SubjectPrefix: "t" + suffix,
		Name:          "poolset-test",
		Logger:        slog.New(slog.DiscardHandler),
	}
}

// open opens a broker with opts, closes it when t ends and then deletes
// its streams, leaving the server as it was.
func open(t testing.TB, opts natsqueue.Options) *natsqueue.Broker {
	t.Helper()
	ctx := context.Background()
	t.Cleanup(func() { deleteStreams(t, opts.URL, opts.Stream, opts.DeadStream) })
	b, err := natsqueue.Open(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return b
}

func deleteStreams(t testing.TB, url string, names ...string) {
	t.Helper()
	nc, err := natsgo.Connect(url)
	if err != nil {
		t.Errorf("delete streams: %v", err)
		return
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Errorf("delete streams: %v", err)
		return
	}
	for _, name := range names {
		err := js.DeleteStream(context.Background(), name)
		if err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			t.Errorf("delete stream %s: %v", name, err)
		}
	}
}

func source(t testing.TB, b *natsqueue.Broker) *natsqueue.Source {
	t.Helper()
	src, err := b.Source(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Stop(context.Background()) })
	return src.(*natsqueue.Source)
}

func messages(n int, prefix string) []worker.Message {
	msgs := make([]worker.Message, n)
	for i := range msgs {
		subject := worker.SubjectOrderPlaced
		if i%2 == 1 {
			subject = worker.SubjectUserRegistered
		}
		msgs[i] = worker.Message{
			Subject: subject,
			ID:      fmt.Sprintf("%s-%d", prefix, i),
			Data:    fmt.Appendf(nil, `{"n":%d}`, i),
		}
	}
	return msgs
}

// publish publishes msgs through b and returns what the server did with
// them.
func publish(t testing.TB, b *natsqueue.Broker, msgs []worker.Message) worker.PublishResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := b.Publisher().Publish(ctx, msgs)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// fetchN fetches until it has want deliveries, failing after 20s.
func fetchN(t testing.TB, src worker.Source, want int) []worker.Delivery {
	t.Helper()
	ctx := context.Background()
	var got []worker.Delivery
	deadline := time.Now().Add(20 * time.Second)
	for len(got) < want {
		if time.Now().After(deadline) {
			t.Fatalf("fetched %d deliveries in 20s; want %d", len(got), want)
		}
		ds, err := src.Fetch(ctx, min(100, want-len(got)), 2*time.Second)
		if err != nil {
			t.Fatalf("Fetch: %v", err)
		}
		got = append(got, ds...)
	}
	return got
}

// fetchNone asserts that a Fetch waiting wait returns nothing.
func fetchNone(t testing.TB, src worker.Source, wait time.Duration) {
	t.Helper()
	ds, err := src.Fetch(context.Background(), 10, wait)
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	if len(ds) != 0 {
		t.Fatalf("Fetch returned %d deliveries, first %s %s (delivered %d); want none",
			len(ds), ds[0].Subject(), ds[0].Data(), ds[0].Delivered())
	}
}

func ack(t testing.TB, ds ...worker.Delivery) {
	t.Helper()
	for _, d := range ds {
		if err := d.Ack(context.Background()); err != nil {
			t.Fatalf("Ack: %v", err)
		}
	}
}

// waitPending waits up to 10s for b.Pending to be want.
func waitPending(t testing.TB, b *natsqueue.Broker, want int64) {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := b.Pending(ctx)
		if err != nil {
			t.Fatalf("Pending: %v", err)
		}
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Pending = %d after 10s; want %d", got, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestPublishFetchAck(t *testing.T) {
	eachServer(t, func(t *testing.T, url string) {
		b := open(t, testOptions(t, url))
		msgs := messages(500, "m")
		publish(t, b, msgs)
		waitPending(t, b, 500) // no consumer yet: the stream's messages
		src := source(t, b)
		waitPending(t, b, 500)

		ds := fetchN(t, src, 500)
		for i, d := range ds {
			if got, want := d.Subject(), msgs[i].Subject; got != want {
				t.Fatalf("delivery %d: Subject() = %q; want %q", i, got, want)
			}
			if got, want := string(d.Data()), string(msgs[i].Data); got != want {
				t.Fatalf("delivery %d: Data() = %s; want %s", i, got, want)
			}
			if got := d.Delivered(); got != 1 {
				t.Fatalf("delivery %d: Delivered() = %d; want 1", i, got)
			}
		}
		waitPending(t, b, 500) // delivered, not acked
		ack(t, ds...)
		waitPending(t, b, 0)
		fetchNone(t, src, 200*time.Millisecond)
	})
}

func TestNakRedeliversAtOnce(t *testing.T) {
	eachServer(t, func(t *testing.T, url string) {
		b := open(t, testOptions(t, url))
		publish(t, b, messages(1, "m"))
		src := source(t, b)
		d := fetchN(t, src, 1)[0]
		if err := d.Nak(context.Background(), 0); err != nil {
			t.Fatalf("Nak: %v", err)
		}
		d2 := fetchN(t, src, 1)[0]
		if got, want := string(d2.Data()), string(d.Data()); got != want {
			t.Errorf("redelivered Data() = %s; want %s", got, want)
		}
		if got := d2.Delivered(); got != 2 {
			t.Errorf("redelivered Delivered() = %d; want 2", got)
		}
		ack(t, d2)
		waitPending(t, b, 0)
	})
}

func TestNakWithDelayRedelivers(t *testing.T) {
	eachServer(t, func(t *testing.T, url string) {
		b := open(t, testOptions(t, url))
		publish(t, b, messages(1, "m"))
		src := source(t, b)
		d := fetchN(t, src, 1)[0]
		if err := d.Nak(context.Background(), 200*time.Millisecond); err != nil {
			t.Fatalf("Nak: %v", err)
		}
		d2 := fetchN(t, src, 1)[0]
		if got := d2.Delivered(); got != 2 {
			t.Errorf("redelivered Delivered() = %d; want 2", got)
		}
		ack(t, d2)
		waitPending(t, b, 0)
	})
}

func TestDeadLetter(t *testing.T) {
	eachServer(t, func(t *testing.T, url string) {
		opts := testOptions(t, url)
		// A short AckWait, so that a message the server had not really
		// terminated would come back within fetchNone's wait.
		opts.AckWait = time.Second
		b := open(t, opts)
		msgs := messages(2, "m")
		publish(t, b, msgs)
		src := source(t, b)
		ds := fetchN(t, src, 2)
		const reason = "bad payload:\nunexpected end of JSON"
		if err := ds[0].DeadLetter(context.Background(), reason); err != nil {
			t.Fatalf("DeadLetter: %v", err)
		}
		ack(t, ds[1])

		waitPending(t, b, 0)
		fetchNone(t, src, 2500*time.Millisecond)

		dead, err := b.DeadLetters(context.Background())
		if err != nil {
			t.Fatalf("DeadLetters: %v", err)
		}
		want := []worker.DeadLetter{{
			Subject: msgs[0].Subject,
			Reason:  "bad payload: unexpected end of JSON",
			Data:    msgs[0].Data,
		}}
		if fmt.Sprintf("%q", dead) != fmt.Sprintf("%q", want) {
			t.Errorf("DeadLetters() = %q; want %q", dead, want)
		}
	})
}

func TestSettleTwice(t *testing.T) {
	eachServer(t, func(t *testing.T, url string) {
		b := open(t, testOptions(t, url))
		publish(t, b, messages(3, "m"))
		src := source(t, b)
		ds := fetchN(t, src, 3)
		ctx := context.Background()
		settles := []struct {
			name string
			do   func(worker.Delivery) error
		}{
			{"Ack", func(d worker.Delivery) error { return d.Ack(ctx) }},
			{"Nak", func(d worker.Delivery) error { return d.Nak(ctx, 0) }},
			{"DeadLetter", func(d worker.Delivery) error { return d.DeadLetter(ctx, "test") }},
		}
		for i, first := range settles {
			d := ds[i]
			if err := first.do(d); err != nil {
				t.Fatalf("%s: %v", first.name, err)
			}
			for _, second := range settles {
				if err := second.do(d); !errors.Is(err, worker.ErrAlreadySettled) {
					t.Errorf("%s after %s: err = %v; want %v", second.name, first.name, err, worker.ErrAlreadySettled)
				}
			}
		}
		// The Nak'd message comes back; nothing else does.
		d := fetchN(t, src, 1)[0]
		if got, want := string(d.Data()), `{"n":1}`; got != want {
			t.Errorf("redelivered %s; want %s", got, want)
		}
		ack(t, d)
		waitPending(t, b, 0)
	})
}

func TestFetchAfterStop(t *testing.T) {
	eachServer(t, func(t *testing.T, url string) {
		b := open(t, testOptions(t, url))
		publish(t, b, messages(1, "m"))
		src := source(t, b)
		ctx := context.Background()
		for range 2 {
			if err := src.Stop(ctx); err != nil {
				t.Fatalf("Stop: %v", err)
			}
		}
		ds, err := src.Fetch(ctx, 10, time.Second)
		if !errors.Is(err, worker.ErrSourceStopped) || len(ds) != 0 {
			t.Errorf("Fetch after Stop = %d deliveries, %v; want 0, %v", len(ds), err, worker.ErrSourceStopped)
		}
		waitPending(t, b, 1)
	})
}

func TestStopEndsFetch(t *testing.T) {
	eachServer(t, func(t *testing.T, url string) {
		b := open(t, testOptions(t, url))
		src := source(t, b)
		type result struct {
			n   int
			err error
		}
		done := make(chan result, 1)
		start := time.Now()
		go func() { // ends when Fetch returns, which Stop forces
			ds, err := src.Fetch(context.Background(), 10, 30*time.Second)
			done <- result{len(ds), err}
		}()
		time.Sleep(200 * time.Millisecond) // let Fetch start waiting; either order is correct
		if err := src.Stop(context.Background()); err != nil {
			t.Fatalf("Stop: %v", err)
		}
		select {
		case r := <-done:
			if r.n != 0 || !errors.Is(r.err, worker.ErrSourceStopped) {
				t.Errorf("Fetch = %d deliveries, %v; want 0, %v", r.n, r.err, worker.ErrSourceStopped)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Fetch still running 10s after Stop")
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("Fetch took %v; want it to end at Stop, at 200ms", d)
		}
	})
}

func TestFetchCancel(t *testing.T) {
	eachServer(t, func(t *testing.T, url string) {
		b := open(t, testOptions(t, url))
		src := source(t, b)
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(200*time.Millisecond, cancel)
		start := time.Now()
		ds, err := src.Fetch(ctx, 10, 30*time.Second)
		took := time.Since(start)
		if !errors.Is(err, context.Canceled) || len(ds) != 0 {
			t.Errorf("Fetch = %d deliveries, %v; want 0, %v", len(ds), err, context.Canceled)
		}
		if took > 10*time.Second {
			t.Errorf("Fetch returned %v after it began; want soon after the cancel at 200ms", took)
		}
		// The source still works.
		publish(t, b, messages(1, "m"))
		ack(t, fetchN(t, src, 1)...)
		waitPending(t, b, 0)
	})
}

func TestFetchTimeout(t *testing.T) {
	eachServer(t, func(t *testing.T, url string) {
		b := open(t, testOptions(t, url))
		src := source(t, b)
		for _, wait := range []time.Duration{0, time.Nanosecond, 100 * time.Millisecond} {
			ds, err := src.Fetch(context.Background(), 10, wait)
			if err != nil || len(ds) != 0 {
				t.Errorf("Fetch(maxWait %v) on an empty stream = %d deliveries, %v; want 0, nil", wait, len(ds), err)
			}
		}
		publish(t, b, messages(3, "m"))
		waitPending(t, b, 3)
		ds, err := src.Fetch(context.Background(), 10, 0)
		if err != nil || len(ds) != 3 {
			t.Fatalf("Fetch(maxWait 0) = %d deliveries, %v; want 3, nil", len(ds), err)
		}
		ack(t, ds...)
	})
}

// TestDuplicateID: a message whose ID the stream already holds is
// confirmed, not stored, and Publish counts it as a duplicate, within one
// call and across calls.
func TestDuplicateID(t *testing.T) {
	eachServer(t, func(t *testing.T, url string) {
		b := open(t, testOptions(t, url))
		msgs := messages(3, "m")
		msgs[1].ID, msgs[2].ID = msgs[0].ID, msgs[0].ID
		if got, want := publish(t, b, msgs), (worker.PublishResult{Stored: 1, Duplicates: 2}); got != want {
			t.Errorf("first Publish: got %+v; want %+v", got, want)
		}
		again := append(messages(4, "new"), msgs[0])
		if got, want := publish(t, b, again), (worker.PublishResult{Stored: 4, Duplicates: 1}); got != want {
			t.Errorf("second Publish: got %+v; want %+v", got, want)
		}
		waitPending(t, b, 5)
		src := source(t, b)
		ds := fetchN(t, src, 5)
		if got, want := string(ds[0].Data()), string(msgs[0].Data); got != want {
			t.Errorf("Data() = %s; want %s", got, want)
		}
		ack(t, ds...)
		fetchNone(t, src, 200*time.Millisecond)
	})
}

func TestPurge(t *testing.T) {
	eachServer(t, func(t *testing.T, url string) {
		b := open(t, testOptions(t, url))
		publish(t, b, messages(3, "m"))
		src := source(t, b)
		ds := fetchN(t, src, 1)
		if err := ds[0].DeadLetter(context.Background(), "test"); err != nil {
			t.Fatal(err)
		}
		if err := b.Purge(context.Background()); err != nil {
			t.Fatalf("Purge: %v", err)
		}
		waitPending(t, b, 0)
		dead, err := b.DeadLetters(context.Background())
		if err != nil || len(dead) != 0 {
			t.Errorf("DeadLetters() after Purge = %v, %v; want none", dead, err)
		}
		fetchNone(t, src, 200*time.Millisecond)
	})
}

func TestCloseLeavesNoGoroutine(t *testing.T) {
	run := func(t *testing.T, url string, shutdown func()) {
		ctx := context.Background()
		opts := testOptions(t, url)
		if shutdown == nil { // a shared server: leave it clean
			t.Cleanup(func() { deleteStreams(t, url, opts.Stream, opts.DeadStream) })
			shutdown = func() {}
		}
		b, err := natsqueue.Open(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.Publisher().Publish(ctx, messages(10, "m")); err != nil {
			t.Fatal(err)
		}
		src, err := b.Source(ctx)
		if err != nil {
			t.Fatal(err)
		}
		ds, err := src.Fetch(ctx, 10, 5*time.Second)
		if err != nil || len(ds) == 0 {
			t.Fatalf("Fetch = %d, %v", len(ds), err)
		}
		if err := src.Stop(ctx); err != nil {
			t.Fatal(err)
		}
		for _, d := range ds {
			if err := d.Nak(ctx, 0); err != nil {
				t.Fatal(err)
			}
		}
		for i := range 3 {
			if err := b.Close(ctx); err != nil {
				t.Errorf("Close #%d: %v", i+1, err)
			}
		}
		shutdown()
		shutdown()
	}
	t.Run("embedded", func(t *testing.T) {
		defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
		e, err := natsqueue.StartEmbedded(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		defer e.Shutdown()
		run(t, e.URL(), e.Shutdown)
	})
	t.Run("machine", func(t *testing.T) {
		url := poolsettest.NATSURL(t)
		defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
		run(t, url, nil)
	})
}

func TestOpenFailure(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// Port 1 on loopback: nothing listens there.
	b, err := natsqueue.Open(ctx, natsqueue.Options{URL: "nats://poolset:s3cret@127.0.0.1:1"})
	if err == nil {
		b.Close(ctx)
		t.Fatal("Open succeeded; want an error")
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "nats: ") || strings.Contains(msg, "s3cret") || !strings.Contains(msg, "nats://poolset:***@127.0.0.1:1") {
		t.Errorf("Open error = %q; want it prefixed \"nats: \" and naming nats://poolset:***@127.0.0.1:1", msg)
	}
	if _, err := natsqueue.Open(ctx, natsqueue.Options{}); err == nil {
		t.Error("Open without URL succeeded; want an error")
	}
}

// TestServerRestart stops the server process under a broker and starts it
// again: the broker reconnects, and every message is delivered and acked.
func TestServerRestart(t *testing.T) {
	p := shoptest.StartServerProcess(t)
	opts := testOptions(t, p.URL())
	opts.AckWait = 5 * time.Second // a delivery lost in the restart comes back soon
	opts.Logger = slog.New(slog.NewTextHandler(t.Output(), nil))
	b := open(t, opts)
	msgs := messages(100, "m")
	publish(t, b, msgs)
	src := source(t, b)
	acked := map[string]bool{}
	for _, d := range fetchN(t, src, 50) {
		ack(t, d)
		acked[string(d.Data())] = true
	}
	waitPending(t, b, 50)

	p.Stop()
	// A Fetch while the server is down ends with its wait.
	start := time.Now()
	ds, err := src.Fetch(context.Background(), 10, time.Second)
	if len(ds) != 0 || time.Since(start) > 10*time.Second {
		t.Fatalf("Fetch with the server down = %d deliveries after %v; want none, within 10s", len(ds), time.Since(start))
	}
	t.Logf("Fetch with the server down: %v after %v", err, time.Since(start).Round(time.Millisecond))
	p.Start()

	ctx := context.Background()
	deadline := time.Now().Add(30 * time.Second)
	var fetchErrs, ackErrs int
	for len(acked) < len(msgs) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d messages acked 30s after the restart (%d fetch, %d ack errors)",
				len(acked), len(msgs), fetchErrs, ackErrs)
		}
		ds, err := src.Fetch(ctx, 100, time.Second)
		if err != nil {
			fetchErrs++
			time.Sleep(100 * time.Millisecond)
			continue
		}
		for _, d := range ds {
			if err := d.Ack(ctx); err != nil {
				ackErrs++ // redelivered after AckWait
				continue
			}
			acked[string(d.Data())] = true
		}
	}
	t.Logf("after the restart: %d fetch errors, %d ack errors", fetchErrs, ackErrs)
	waitPending(t, b, 0)
}

// TestPublishThroughput logs how fast Publisher stores 20,000 small
// messages.
func TestPublishThroughput(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	eachServer(t, func(t *testing.T, url string) {
		b := open(t, testOptions(t, url))
		msgs := messages(20000, "m")
		start := time.Now()
		publish(t, b, msgs)
		took := time.Since(start)
		t.Logf("published %d messages in %v: %.0f messages/s", len(msgs), took.Round(time.Millisecond), float64(len(msgs))/took.Seconds())
		waitPending(t, b, int64(len(msgs)))
	})
}

// BenchmarkPublish publishes 20,000 small messages per operation.
func BenchmarkPublish(b *testing.B) {
	run := func(b *testing.B, url string) {
		br := open(b, testOptions(b, url))
		p := br.Publisher()
		ctx := context.Background()
		const n = 20000
		var round int
		for b.Loop() {
			round++
			if _, err := p.Publish(ctx, messages(n, fmt.Sprint(round))); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "msgs/s")
	}
	b.Run("embedded", func(b *testing.B) {
		e, err := natsqueue.StartEmbedded(b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(e.Shutdown)
		run(b, e.URL())
	})
	b.Run("machine", func(b *testing.B) {
		run(b, poolsettest.NATSURL(b))
	})
}
