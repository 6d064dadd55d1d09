package rabbitqueue_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/goleak"

	"github.com/poolset/poolset/examples/shop/rabbitqueue"
	"github.com/poolset/poolset/examples/shop/worker"
	"github.com/poolset/poolset/poolsettest"
)

var (
	_ worker.Broker    = (*rabbitqueue.Broker)(nil)
	_ worker.Source    = (*rabbitqueue.Source)(nil)
	_ worker.Publisher = (*rabbitqueue.Publisher)(nil)
	_ worker.Delivery  = (*rabbitqueue.Delivery)(nil)
)

var seq atomic.Int64

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testOptions returns Options with exchange and queue names unique to t,
// whose exchanges and queues are deleted when t ends.
func testOptions(t *testing.T) rabbitqueue.Options {
	t.Helper()
	url := poolsettest.AMQPURL(t)
	name := fmt.Sprintf("poolset.test.%s.%d.%d", t.Name(), time.Now().UnixNano()%1e6, seq.Add(1))
	opts := rabbitqueue.Options{
		URL:            url,
		Exchange:       name,
		Queue:          name + ".q",
		DeadExchange:   name + ".dead",
		DeadQueue:      name + ".dead.q",
		ConnectionName: name,
		Logger:         slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo})),
	}
	t.Cleanup(func() {
		conn, err := amqp.Dial(url)
		if err != nil {
			t.Errorf("cleanup: %v", err)
			return
		}
		defer conn.Close()
		ch, err := conn.Channel()
		if err != nil {
			t.Errorf("cleanup: %v", err)
			return
		}
		defer ch.Close()
		for _, q := range []string{opts.Queue, opts.DeadQueue} {
			if _, err := ch.QueueDelete(q, false, false, false); err != nil {
				t.Errorf("cleanup: delete queue %s: %v", q, err)
			}
		}
		for _, x := range []string{opts.Exchange, opts.DeadExchange} {
			if err := ch.ExchangeDelete(x, false, false); err != nil {
				t.Errorf("cleanup: delete exchange %s: %v", x, err)
			}
		}
	})
	return opts
}

// open opens a Broker with opts and closes it when t ends.
func open(t *testing.T, opts rabbitqueue.Options) *rabbitqueue.Broker {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := rabbitqueue.Open(ctx, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := b.Close(context.Background()); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return b
}

func source(t *testing.T, b *rabbitqueue.Broker) *rabbitqueue.Source {
	t.Helper()
	s, err := b.Source(context.Background())
	if err != nil {
		t.Fatalf("Source: %v", err)
	}
	return s.(*rabbitqueue.Source)
}

// publish publishes n messages with IDs prefix-0 … and returns the IDs.
func publish(t *testing.T, b *rabbitqueue.Broker, prefix string, n int) []string {
	t.Helper()
	msgs := make([]worker.Message, n)
	ids := make([]string, n)
	for i := range msgs {
		ids[i] = fmt.Sprintf("%s-%d", prefix, i)
		subject := worker.SubjectOrderPlaced
		if i%5 == 0 {
			subject = worker.SubjectUserRegistered
		}
		msgs[i] = worker.Message{Subject: subject, ID: ids[i], Data: []byte(ids[i])}
	}
	res, err := b.Publisher().Publish(context.Background(), msgs)
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	// RabbitMQ does not deduplicate: every confirmed message is stored.
	if want := (worker.PublishResult{Stored: n}); res != want {
		t.Fatalf("Publish: got %+v; want %+v", res, want)
	}
	return ids
}

func id(d worker.Delivery) string { return d.(*rabbitqueue.Delivery).MessageID() }

// fetchN fetches until it has n deliveries, failing after within.
func fetchN(t *testing.T, s *rabbitqueue.Source, n int, within time.Duration) []worker.Delivery {
	t.Helper()
	var got []worker.Delivery
	deadline := time.Now().Add(within)
	for len(got) < n {
		if time.Now().After(deadline) {
			t.Fatalf("fetched %d deliveries in %v; want %d", len(got), within, n)
		}
		ds, err := s.Fetch(context.Background(), n-len(got), 500*time.Millisecond)
		if err != nil {
			t.Fatalf("Fetch: %v", err)
		}
		got = append(got, ds...)
	}
	return got
}

// expectNone fails when a delivery arrives within wait.
func expectNone(t *testing.T, s *rabbitqueue.Source, wait time.Duration) {
	t.Helper()
	ds, err := s.Fetch(context.Background(), 10, wait)
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	for _, d := range ds {
		t.Errorf("unexpected delivery %s (delivered %d)", id(d), d.Delivered())
		d.Ack(context.Background())
	}
}

// drain acks deliveries until none comes for 300 ms, and returns how many.
func drain(t *testing.T, s *rabbitqueue.Source) int {
	t.Helper()
	n := 0
	for {
		ds, err := s.Fetch(context.Background(), 50, 300*time.Millisecond)
		if err != nil {
			t.Fatalf("Fetch: %v", err)
		}
		if len(ds) == 0 {
			return n
		}
		for _, d := range ds {
			n++
			if err := d.Ack(context.Background()); err != nil {
				t.Fatalf("Ack %s: %v", id(d), err)
			}
		}
	}
}

// waitPending waits for b.Pending to be want.
func waitPending(t *testing.T, b *rabbitqueue.Broker, want int64) {
	t.Helper()
	var got int64
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		var err error
		if got, err = b.Pending(context.Background()); err != nil {
			t.Fatalf("Pending: %v", err)
		}
		if got == want {
			return
		}
	}
	t.Errorf("Pending = %d; want %d", got, want)
}

func TestPublishFetchAck(t *testing.T) {
	b := open(t, testOptions(t))
	s := source(t, b)
	ids := publish(t, b, "m", 500)
	ctx := context.Background()

	seen := map[string]bool{}
	batches := 0
	for deadline := time.Now().Add(10 * time.Second); len(seen) < len(ids); {
		if time.Now().After(deadline) {
			t.Fatalf("got %d distinct messages; want %d", len(seen), len(ids))
		}
		ds, err := s.Fetch(ctx, 64, time.Second)
		if err != nil {
			t.Fatalf("Fetch: %v", err)
		}
		if len(ds) > 64 {
			t.Fatalf("Fetch(64) returned %d", len(ds))
		}
		if len(ds) > 0 {
			batches++
		}
		for _, d := range ds {
			if seen[id(d)] {
				t.Errorf("message %s delivered twice", id(d))
			}
			seen[id(d)] = true
			if got := string(d.Data()); got != id(d) {
				t.Errorf("Data = %q; want %q", got, id(d))
			}
			if d.Subject() != worker.SubjectOrderPlaced && d.Subject() != worker.SubjectUserRegistered {
				t.Errorf("Subject = %q", d.Subject())
			}
			if got := d.Delivered(); got != 1 {
				t.Errorf("Delivered = %d; want 1", got)
			}
		}
		for _, d := range ds {
			if err := d.Ack(ctx); err != nil {
				t.Fatalf("Ack: %v", err)
			}
		}
	}
	t.Logf("500 messages in %d batches", batches)
	waitPending(t, b, 0)
	expectNone(t, s, 300*time.Millisecond)
}

func TestNakRedelivers(t *testing.T) {
	ctx := context.Background()
	for _, delay := range []time.Duration{0, 200 * time.Millisecond} {
		t.Run(fmt.Sprint("delay=", delay), func(t *testing.T) {
			b := open(t, testOptions(t))
			s := source(t, b)
			publish(t, b, "nak", 1)
			d := fetchN(t, s, 1, 5*time.Second)[0]
			start := time.Now()
			if err := d.Nak(ctx, delay); err != nil {
				t.Fatalf("Nak: %v", err)
			}
			if got, want := d.Nak(ctx, 0), worker.ErrAlreadySettled; !errors.Is(got, want) {
				t.Errorf("second Nak = %v; want %v", got, want)
			}
			again := fetchN(t, s, 1, 5*time.Second)[0]
			if elapsed := time.Since(start); elapsed < delay {
				t.Errorf("redelivered after %v; want at least %v", elapsed, delay)
			}
			if id(again) != id(d) {
				t.Errorf("redelivered %s; want %s", id(again), id(d))
			}
			if got := again.Delivered(); got != 2 {
				t.Errorf("Delivered = %d; want 2", got)
			}
			if err := again.Ack(ctx); err != nil {
				t.Fatalf("Ack: %v", err)
			}
			waitPending(t, b, 0)
		})
	}
}

func TestDelayedNakFlushedByStop(t *testing.T) {
	ctx := context.Background()
	opts := testOptions(t)
	b := open(t, opts)
	s := source(t, b)
	publish(t, b, "later", 1)
	d := fetchN(t, s, 1, 5*time.Second)[0]
	if err := d.Nak(ctx, time.Hour); err != nil {
		t.Fatalf("Nak: %v", err)
	}
	if err := s.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	s2 := source(t, b)
	again := fetchN(t, s2, 1, 5*time.Second)[0]
	if id(again) != id(d) || again.Delivered() != 2 {
		t.Errorf("got %s delivered %d; want %s delivered 2", id(again), again.Delivered(), id(d))
	}
	again.Ack(ctx)
	waitPending(t, b, 0)
}

func TestDeadLetter(t *testing.T) {
	ctx := context.Background()
	b := open(t, testOptions(t))
	s := source(t, b)
	publish(t, b, "dl", 2) // dl-0 is a registration, dl-1 an order
	ds := fetchN(t, s, 2, 5*time.Second)
	for _, d := range ds {
		var err error
		if id(d) == "dl-1" {
			err = d.DeadLetter(ctx, "product does not exist")
		} else {
			err = d.Ack(ctx)
		}
		if err != nil {
			t.Fatalf("settle %s: %v", id(d), err)
		}
	}
	expectNone(t, s, 500*time.Millisecond)
	for range 2 { // DeadLetters leaves them in the queue
		dead, err := b.DeadLetters(ctx)
		if err != nil {
			t.Fatalf("DeadLetters: %v", err)
		}
		want := []worker.DeadLetter{{Subject: worker.SubjectOrderPlaced, Reason: "product does not exist", Data: []byte("dl-1")}}
		if g, w := fmt.Sprintf("%+q", dead), fmt.Sprintf("%+q", want); g != w {
			t.Errorf("DeadLetters = %s; want %s", g, w)
		}
	}
	waitPending(t, b, 0)
	if err := b.Purge(ctx); err != nil {
		t.Fatalf("Purge: %v", err)
	}
	if dead, err := b.DeadLetters(ctx); err != nil || len(dead) != 0 {
		t.Errorf("DeadLetters after Purge = %v, %v; want none", dead, err)
	}
}

// TestDeadLetterRefused: when the broker refuses the dead-letter copy for
// good (here the dead exchange was deleted after Open: 404 NOT_FOUND),
// DeadLetter returns worker.ErrDeadLetterRefused and leaves the delivery
// unsettled; Drop then rejects it and it never comes again. The
// Publisher's channel is not affected.
func TestDeadLetterRefused(t *testing.T) {
	ctx := context.Background()
	opts := testOptions(t)
	b := open(t, opts)
	s := source(t, b)
	conn, err := amqp.Dial(opts.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.ExchangeDelete(opts.DeadExchange, false, false); err != nil {
		t.Fatalf("delete the dead exchange: %v", err)
	}
	publish(t, b, "refused", 1)
	d := fetchN(t, s, 1, 5*time.Second)[0]
	err = d.DeadLetter(ctx, "bad order")
	if !errors.Is(err, worker.ErrDeadLetterRefused) || !strings.Contains(err.Error(), "404") {
		t.Fatalf("DeadLetter = %v; want an error wrapping %v, with the broker's 404", err, worker.ErrDeadLetterRefused)
	}
	if err := d.Drop(ctx, "bad order"); err != nil {
		t.Fatalf("Drop after a refused DeadLetter = %v; want nil (the delivery unsettled)", err)
	}
	if err := d.Ack(ctx); !errors.Is(err, worker.ErrAlreadySettled) {
		t.Errorf("Ack after Drop = %v; want %v", err, worker.ErrAlreadySettled)
	}
	expectNone(t, s, 500*time.Millisecond)
	waitPending(t, b, 0)
	publish(t, b, "after", 1)
	if n := drain(t, s); n != 1 {
		t.Errorf("deliveries published after the refusal: got %d; want 1", n)
	}
}

// TestDeadLetterTransient: when the copy fails for a reason that may pass
// (here ctx has ended), DeadLetter hands the message back for redelivery.
func TestDeadLetterTransient(t *testing.T) {
	b := open(t, testOptions(t))
	s := source(t, b)
	publish(t, b, "transient", 1)
	d := fetchN(t, s, 1, 5*time.Second)[0]
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := d.DeadLetter(ctx, "bad order"); err == nil || errors.Is(err, worker.ErrDeadLetterRefused) {
		t.Fatalf("DeadLetter with an ended ctx = %v; want an error, not %v", err, worker.ErrDeadLetterRefused)
	}
	again := fetchN(t, s, 1, 5*time.Second)[0]
	if got := again.Delivered(); id(again) != id(d) || got != 2 {
		t.Errorf("redelivered %s, delivery %d; want %s, 2", id(again), got, id(d))
	}
	if err := again.Ack(context.Background()); err != nil {
		t.Fatalf("Ack: %v", err)
	}
	if dead, _ := b.DeadLetters(context.Background()); len(dead) != 0 {
		t.Errorf("DeadLetters = %v; want none", dead)
	}
}

func TestSettleTwice(t *testing.T) {
	ctx := context.Background()
	b := open(t, testOptions(t))
	s := source(t, b)
	publish(t, b, "twice", 1)
	d := fetchN(t, s, 1, 5*time.Second)[0]
	if err := d.Ack(ctx); err != nil {
		t.Fatalf("Ack: %v", err)
	}
	for name, settle := range map[string]func() error{
		"Ack":        func() error { return d.Ack(ctx) },
		"Nak":        func() error { return d.Nak(ctx, 0) },
		"Nak later":  func() error { return d.Nak(ctx, time.Second) },
		"DeadLetter": func() error { return d.DeadLetter(ctx, "x") },
	} {
		err := settle()
		if err != worker.ErrAlreadySettled { // unwrapped
			t.Errorf("%s after Ack = %v; want %v", name, err, worker.ErrAlreadySettled)
		}
	}
	waitPending(t, b, 0)
	if dead, _ := b.DeadLetters(ctx); len(dead) != 0 {
		t.Errorf("DeadLetters = %v; want none", dead)
	}
}

func TestStopHandsBack(t *testing.T) {
	ctx := context.Background()
	opts := testOptions(t)
	opts.Prefetch = 50
	b1 := open(t, opts)
	s1 := source(t, b1)
	ids := publish(t, b1, "stop", 100)
	held := fetchN(t, s1, 10, 5*time.Second)
	// Deliveries on the wire are counted nowhere: wait for the prefetch.
	waitPending(t, b1, 100)
	if err := s1.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := s1.Stop(ctx); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if ds, err := s1.Fetch(ctx, 10, time.Second); !errors.Is(err, worker.ErrSourceStopped) || len(ds) != 0 {
		t.Fatalf("Fetch after Stop = %d, %v; want %v", len(ds), err, worker.ErrSourceStopped)
	}

	acked := map[string]bool{}
	b2 := open(t, opts)
	s2 := source(t, b2)
	for len(acked) < 90 { // acking as it goes: prefetch is 50
		for _, d := range fetchN(t, s2, 1, 5*time.Second) {
			if acked[id(d)] {
				t.Errorf("%s delivered twice", id(d))
			}
			acked[id(d)] = true
			if err := d.Ack(ctx); err != nil {
				t.Fatalf("Ack: %v", err)
			}
		}
	}
	for _, d := range held {
		if acked[id(d)] {
			t.Errorf("held delivery %s was also delivered to the second source", id(d))
		}
		if err := d.Nak(ctx, 0); err != nil { // settling still works after Stop
			t.Fatalf("Nak after Stop: %v", err)
		}
	}
	for _, d := range fetchN(t, s2, 10, 5*time.Second) {
		acked[id(d)] = true
		if err := d.Ack(ctx); err != nil {
			t.Fatalf("Ack: %v", err)
		}
	}
	for _, want := range ids {
		if !acked[want] {
			t.Errorf("message %s lost", want)
		}
	}
	if len(acked) != 100 {
		t.Errorf("acked %d distinct messages; want 100", len(acked))
	}
	expectNone(t, s2, 300*time.Millisecond)
	waitPending(t, b2, 0)
}

func TestCloseConcurrentNoLeak(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ctx := context.Background()
	opts := testOptions(t)
	b, err := rabbitqueue.Open(ctx, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	s := source(t, b)
	publish(t, b, "close", 20)
	held := fetchN(t, s, 5, 5*time.Second)
	if err := held[0].Nak(ctx, time.Hour); err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 4)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() { errs <- b.Close(ctx) })
	}
	wg.Go(func() { s.Stop(ctx) })
	wg.Go(func() { s.Fetch(ctx, 10, time.Second) })
	wg.Go(func() { b.Pending(ctx) })
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	}
	if err := b.Close(ctx); err != nil {
		t.Errorf("Close again: %v", err)
	}
	if _, err := s.Fetch(ctx, 1, 0); !errors.Is(err, worker.ErrSourceStopped) {
		t.Errorf("Fetch after Close = %v; want %v", err, worker.ErrSourceStopped)
	}
	if err := held[1].Ack(ctx); !errors.Is(err, rabbitqueue.ErrStaleDelivery) {
		t.Errorf("Ack after Close = %v; want %v", err, rabbitqueue.ErrStaleDelivery)
	}
	if _, err := b.Source(ctx); !errors.Is(err, rabbitqueue.ErrClosed) {
		t.Errorf("Source after Close = %v; want %v", err, rabbitqueue.ErrClosed)
	}
	if _, err := b.Publisher().Publish(ctx, []worker.Message{{Subject: worker.SubjectOrderPlaced}}); !errors.Is(err, rabbitqueue.ErrClosed) {
		t.Errorf("Publish after Close = %v; want %v", err, rabbitqueue.ErrClosed)
	}
	// Nothing was lost: a new broker sees all 20.
	b2, err := rabbitqueue.Open(ctx, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	waitPending(t, b2, 20)
	if err := b2.Close(ctx); err != nil {
		t.Errorf("Close: %v", err)
	}
}

// onLog returns a channel closed once opts.Logger logs a message that
// starts with prefix.
func onLog(opts *rabbitqueue.Options, prefix string) <-chan struct{} {
	ch := make(chan struct{})
	opts.Logger = slog.New(&signalHandler{Handler: opts.Logger.Handler(), prefix: prefix, ch: ch, once: new(sync.Once)})
	return ch
}

type signalHandler struct {
	slog.Handler
	prefix string
	ch     chan struct{}
	once   *sync.Once
}

func (h *signalHandler) Handle(ctx context.Context, r slog.Record) error {
	if strings.HasPrefix(r.Message, h.prefix) {
		h.once.Do(func() { close(h.ch) })
	}
	return h.Handler.Handle(ctx, r)
}

func (h *signalHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &signalHandler{Handler: h.Handler.WithAttrs(as), prefix: h.prefix, ch: h.ch, once: h.once}
}

func (h *signalHandler) WithGroup(name string) slog.Handler {
	return &signalHandler{Handler: h.Handler.WithGroup(name), prefix: h.prefix, ch: h.ch, once: h.once}
}

// closeConnections closes, from the server side, the connections whose
// connection_name is name.
func closeConnections(t *testing.T, name string) {
	t.Helper()
	out, err := exec.Command("rabbitmqctl", "-s", "list_connections", "pid", "client_properties").Output()
	if err != nil {
		poolsettest.Skip(t, "rabbitmqctl list_connections: %v", err)
	}
	n := 0
	for line := range strings.Lines(string(out)) {
		pid, props, _ := strings.Cut(line, "\t")
		if !strings.Contains(props, `"`+name+`"`) {
			continue
		}
		n++
		if out, err := exec.Command("rabbitmqctl", "-q", "close_connection", pid, "test").CombinedOutput(); err != nil {
			t.Fatalf("rabbitmqctl close_connection %s: %v\n%s", pid, err, out)
		}
	}
	if n == 0 {
		t.Fatalf("no connection named %s in\n%s", name, out)
	}
}

func TestReconnect(t *testing.T) {
	if _, err := exec.LookPath("rabbitmqctl"); err != nil {
		poolsettest.Skip(t, "rabbitmqctl not found: %v", err)
	}
	ctx := context.Background()
	opts := testOptions(t)
	lost := onLog(&opts, "rabbitmq: connection lost")
	b := open(t, opts)
	s := source(t, b)
	ids := publish(t, b, "re", 100)

	acked := map[string]bool{}
	for _, d := range fetchN(t, s, 40, 5*time.Second) {
		if err := d.Ack(ctx); err != nil {
			t.Fatalf("Ack: %v", err)
		}
		acked[id(d)] = true
	}
	held := fetchN(t, s, 10, 5*time.Second)

	closeConnections(t, opts.ConnectionName)
	select {
	case <-lost: // the client has seen the connection close
	case <-time.After(20 * time.Second):
		t.Fatal("no connection loss logged 20 s after the broker closed the connection")
	}
	stale := 0
	for _, d := range held {
		err := d.Ack(ctx)
		switch {
		case errors.Is(err, rabbitqueue.ErrStaleDelivery):
			stale++
		case err != nil:
			t.Errorf("Ack of a delivery from the closed connection = %v; want %v", err, rabbitqueue.ErrStaleDelivery)
		}
	}
	if stale != len(held) {
		t.Errorf("%d of %d acks after the connection closed were stale; want all", stale, len(held))
	}

	// Publishing works again once reconnected.
	pctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if _, err := b.Publisher().Publish(pctx, []worker.Message{{Subject: worker.SubjectOrderPlaced, ID: "re-after", Data: []byte("after")}}); err != nil {
		t.Fatalf("Publish after reconnect: %v", err)
	}
	ids = append(ids, "re-after")

	deadline := time.Now().Add(20 * time.Second)
	for len(acked) < len(ids) {
		if time.Now().After(deadline) {
			t.Fatalf("acked %d distinct messages; want %d", len(acked), len(ids))
		}
		ds, err := s.Fetch(ctx, 50, time.Second)
		if err != nil {
			t.Fatalf("Fetch: %v", err)
		}
		for _, d := range ds {
			if err := d.Ack(ctx); err != nil {
				t.Errorf("Ack %s: %v", id(d), err)
				continue
			}
			acked[id(d)] = true
		}
	}
	// Duplicates (acks lost with the connection) may still come.
	if n := drain(t, s); n > 0 {
		t.Logf("%d duplicates", n)
	}
	waitPending(t, b, 0)
}

func TestCloseWhileReconnecting(t *testing.T) {
	if _, err := exec.LookPath("rabbitmqctl"); err != nil {
		poolsettest.Skip(t, "rabbitmqctl not found: %v", err)
	}
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ctx := context.Background()
	opts := testOptions(t)
	b, err := rabbitqueue.Open(ctx, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	s := source(t, b)
	publish(t, b, "cwr", 10)
	held := fetchN(t, s, 10, 5*time.Second)
	closeConnections(t, opts.ConnectionName)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() { b.Close(ctx) })
	}
	wg.Go(func() {
		for _, d := range held {
			if err := d.Ack(ctx); err != nil && !errors.Is(err, rabbitqueue.ErrStaleDelivery) {
				t.Errorf("Ack = %v; want nil or %v", err, rabbitqueue.ErrStaleDelivery)
			}
		}
	})
	wg.Wait()
	b2, err := rabbitqueue.Open(ctx, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	// The server closed the connection before the acks: all 10 come again.
	waitPending(t, b2, 10)
	b2.Close(ctx)
}

func TestQueueDeletedRecovers(t *testing.T) {
	ctx := context.Background()
	opts := testOptions(t)
	opts.ReconnectWait = 50 * time.Millisecond
	b := open(t, opts)
	s := source(t, b)
	conn, err := amqp.Dial(opts.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDelete(opts.Queue, false, false, false); err != nil {
		t.Fatal(err)
	}
	// The broker cancels the consumer; the Broker declares the queue again
	// and consumes it. Until the bindings are back, publishes are dropped.
	deadline := time.Now().Add(10 * time.Second)
	for got := false; !got; {
		if time.Now().After(deadline) {
			t.Fatal("no delivery after the queue was deleted")
		}
		publish(t, b, "again", 1)
		ds, err := s.Fetch(ctx, 10, 200*time.Millisecond)
		if err != nil {
			t.Fatalf("Fetch: %v", err)
		}
		for _, d := range ds {
			got = true
			if err := d.Ack(ctx); err != nil {
				t.Fatalf("Ack: %v", err)
			}
		}
	}
	drain(t, s)
	waitPending(t, b, 0)
}

func TestOpenError(t *testing.T) {
	ctx := context.Background()
	for _, url := range []string{"amqp://guest:s3cret@127.0.0.1:1/", "http://guest:s3cret@127.0.0.1/"} {
		_, err := rabbitqueue.Open(ctx, rabbitqueue.Options{URL: url, DialTimeout: time.Second})
		if err == nil {
			t.Fatalf("Open(%s) succeeded", url)
		}
		if msg := err.Error(); strings.Contains(msg, "s3cret") || !strings.Contains(msg, "guest:***@127.0.0.1") || !strings.HasPrefix(msg, "rabbitmq: ") {
			t.Errorf("Open error = %q; want it prefixed, naming the redacted URL", msg)
		}
	}
}

// TestPublishThroughput logs publish throughput with confirms for 20,000
// small messages.
func TestPublishThroughput(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	b := open(t, testOptions(t))
	const n = 20000
	msgs := make([]worker.Message, n)
	for i := range msgs {
		msgs[i] = worker.Message{Subject: worker.SubjectOrderPlaced, ID: fmt.Sprint(i), Data: []byte(`{"order":12345,"qty":1}`)}
	}
	start := time.Now()
	if _, err := b.Publisher().Publish(context.Background(), msgs); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	elapsed := time.Since(start)
	t.Logf("published %d messages with confirms in %v: %.0f messages/s", n, elapsed.Round(time.Millisecond), n/elapsed.Seconds())
	waitPending(t, b, n)
}
