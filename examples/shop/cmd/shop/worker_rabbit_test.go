package main

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/poolset/poolset/examples/shop/worker"
)

// TestWorkerSIGTERMGroupedRabbit: on RabbitMQ, a worker that places orders
// in groups (the default --group 500) and is stopped by SIGTERM mid-run
// exits 0 and leaves in the queue exactly the orders it did not commit:
// none of the acks of its last groups is lost when it closes (issue 7).
// Each of the 500 acks of a group is a settle command of its own for the
// quorum queue, and the broker's channel holds back all but the first 33
// until the queue has applied those; a channel closed meanwhile used to
// drop them, and the broker delivered the committed orders again.
func TestWorkerSIGTERMGroupedRabbit(t *testing.T) {
	b := setupBroker(t, "rabbitmq")
	d := newShopDB(t, "poolset_t_wk_term_grouped")
	seedShop(t, d)
	loadOrders(t, b, wkOrders)
	// SIGTERM once the first group is stored: the worker holds at most
	// --prefetch (1000) messages, so it stops with about half the orders
	// still in the queue.
	w := startWorker(t, d, b, "--drain-timeout", "20s", "--exit-when-idle", "10s")
	at := waitOrders(t, d, w, 1)
	w.signal(syscall.SIGTERM)
	s := wantCleanExit(t, "worker", w)
	committed := d.orders(t)
	t.Logf("SIGTERM at %d of %d orders stored; %d stored at exit", at, wkOrders, committed)
	if committed >= wkOrders {
		t.Skipf("the worker stored all %d orders before SIGTERM: nothing to check", wkOrders)
	}
	if s.Worker.SettleErrors != 0 || !s.Worker.Drained {
		t.Errorf("got settle errors %d, drained %v; want 0, true", s.Worker.SettleErrors, s.Worker.Drained)
	}
	if got, want := s.Worker.Acked, int64(committed); got != want {
		t.Errorf("acked: got %d; want the %d orders stored", got, want)
	}

	ready := queueReady(t, b.url, "poolset.shop")
	if want := wkOrders - committed; ready != want {
		t.Errorf("queue after the worker: got %d messages; want %d (%d published, %d stored): %d committed orders back in the queue",
			ready, want, wkOrders, committed, ready-want)
	}
	// rabbitmqctl's figures for a quorum queue lag by up to a few seconds.
	var line string
	eventually(15*time.Second, func() bool {
		line = rabbitQueueLine(t, b.url, "poolset.shop")
		return line == fmt.Sprintf("poolset.shop %d %d 0", ready, ready)
	})
	t.Logf("rabbitmqctl list_queues name messages messages_ready messages_unacknowledged: %s", line)
}

// queueReady waits until no consumer holds messages of queue on the
// broker at amqpURL (the worker's connection has gone, and the broker has
// returned whatever it held) and returns the queue's ready count, as the
// queue itself reports it (queue.declare passive).
func queueReady(t *testing.T, amqpURL, queue string) int {
	t.Helper()
	conn, err := amqp.Dial(amqpURL)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatalf("channel: %v", err)
	}
	var q amqp.Queue
	if !eventually(10*time.Second, func() bool {
		q, err = ch.QueueDeclarePassive(queue, true, false, false, false, nil)
		return err == nil && q.Consumers == 0
	}) {
		t.Fatalf("queue %s: got %+v, %v; want no consumer", queue, q, err)
	}
	return q.Messages
}

// rabbitQueueLine returns rabbitmqctl list_queues's line for queue, in
// amqpURL's vhost: name messages messages_ready messages_unacknowledged.
func rabbitQueueLine(t *testing.T, amqpURL, queue string) string {
	t.Helper()
	uri, err := amqp.ParseURI(amqpURL)
	if err != nil {
		t.Fatalf("AMQP URL: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "rabbitmqctl", "-q", "list_queues", "-p", uri.Vhost,
		"name", "messages", "messages_ready", "messages_unacknowledged").CombinedOutput()
	if err != nil {
		return "(rabbitmqctl: " + err.Error() + ")"
	}
	for line := range strings.Lines(string(out)) {
		if f := strings.Fields(line); len(f) == 4 && f[0] == queue {
			return strings.Join(f, " ")
		}
	}
	return "(no line for " + strconv.Quote(queue) + ")"
}

// TestWorkerDeadLetterRefusedRabbit: on RabbitMQ, a message the worker
// dead-letters whose copy the broker refuses for good (the dead exchange
// was deleted while the worker ran: 404 NOT_FOUND) is dropped: rejected,
// logged with its reason and counted, never delivered again; the worker
// reaches idle and exits 0 (issue 7, point 2). Before, it was handed back
// and came again for ever.
func TestWorkerDeadLetterRefusedRabbit(t *testing.T) {
	b := setupBroker(t, "rabbitmq")
	d := newShopDB(t, "poolset_t_wk_dl_refused")
	seedShop(t, d)
	conn := openTestBroker(t, b) // declares the topology: before the delete
	addr := freeAddr(t)
	w := startWorker(t, d, b, "--admin", addr, "--exit-when-idle", "3s")
	waitReady(t, w, addr)

	amqpConn, err := amqp.Dial(b.url)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer amqpConn.Close()
	ch, err := amqpConn.Channel()
	if err != nil {
		t.Fatalf("channel: %v", err)
	}
	if err := ch.ExchangeDelete("shop.dead", false, false); err != nil {
		t.Fatalf("delete the dead exchange: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	msg := worker.Message{Subject: worker.SubjectOrderPlaced, ID: "refused-1", Data: []byte(`{"id":`)}
	if _, err := conn.Publisher().Publish(ctx, []worker.Message{msg}); err != nil {
		t.Fatalf("publish: %v", err)
	}

	s := wantCleanExit(t, "worker", w)
	if s.Worker.Received != 1 || s.Worker.Dropped != 1 || s.Worker.DeadLettered != 0 || s.Worker.SettleErrors != 0 {
		t.Errorf("got received %d, dropped %d, dead-lettered %d, settle errors %d; want 1, 1, 0, 0",
			s.Worker.Received, s.Worker.Dropped, s.Worker.DeadLettered, s.Worker.SettleErrors)
	}
	stderr := w.stderr.String()
	if !strings.Contains(stderr, "dropped a message") || !strings.Contains(stderr, "malformed") || !strings.Contains(stderr, "404") {
		t.Errorf("stderr: want the drop logged with its reason (malformed) and the broker's 404; got:\n%s", tail(stderr, 20))
	}
	if got := queueReady(t, b.url, "poolset.shop"); got != 0 {
		t.Errorf("queue after the worker: got %d messages; want 0", got)
	}
}
