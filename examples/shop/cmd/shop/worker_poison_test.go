package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/poolset/poolset/examples/shop/shop"
	"github.com/poolset/poolset/examples/shop/worker"
)

// TestWorkerPoison: invalid messages go to the dead letter with the
// reason; valid orders of unknown products or users are stored as
// rejected with the reason; the good ones are accepted; the worker exits 0.
func TestWorkerPoison(t *testing.T) {
	invalid := []struct {
		name, body, reason string
	}{
		{"malformed", `{"id":`, "malformed"},
		{"missing fields", `{"id":"p-2"}`, "missing field"},
		{"negative qty", `{"id":"p-3","user_id":1,"items":[{"product_id":1,"qty":-1}]}`, "qty"},
		{"zero qty", `{"id":"p-4","user_id":1,"items":[{"product_id":1,"qty":0}]}`, "qty"},
		// Two ids that differ only in bytes that are not UTF-8: decoded
		// leniently both were "p-\uFFFD", the first placed and the second
		// dropped as its duplicate.
		{"invalid UTF-8", "{\"id\":\"p-\xff\",\"user_id\":1,\"items\":[{\"product_id\":1,\"qty\":1}]}", "not valid UTF-8"},
		{"other invalid UTF-8", "{\"id\":\"p-\xfe\",\"user_id\":1,\"items\":[{\"product_id\":1,\"qty\":1}]}", "not valid UTF-8"},
	}
	rejected := []struct {
		id, body, reason string
	}{
		{"p-5", `{"id":"p-5","user_id":1,"items":[{"product_id":999999,"qty":1}]}`, "unknown product 999999"},
		{"p-6", `{"id":"p-6","user_id":999999999,"items":[{"product_id":1,"qty":1}]}`, "unknown user 999999999"},
	}
	const good = 50

	for _, kind := range workerBrokers {
		t.Run(kind, func(t *testing.T) {
			b := setupBroker(t, kind)
			d := newShopDB(t, "poolset_t_wk_poison_"+kind)
			seedShop(t, d)
			conn := openTestBroker(t, b)
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			// Nothing in the dead letter but this test's.
			if err := conn.Purge(ctx); err != nil {
				t.Fatalf("purge: %v", err)
			}

			var msgs []worker.Message
			for i, m := range invalid {
				msgs = append(msgs, worker.Message{Subject: worker.SubjectOrderPlaced, ID: fmt.Sprintf("invalid-%d", i+1), Data: []byte(m.body)})
			}
			for _, m := range rejected {
				msgs = append(msgs, worker.Message{Subject: worker.SubjectOrderPlaced, ID: m.id, Data: []byte(m.body)})
			}
			for i := range good {
				o := shop.Order{ID: fmt.Sprintf("g-%d", i+1), UserID: int64(1 + i), Items: []shop.Item{{ProductID: int64(1 + i%100), Qty: 1}}}
				msgs = append(msgs, worker.Message{Subject: worker.SubjectOrderPlaced, ID: o.ID, Data: worker.EncodeOrder(o)})
			}
			res, err := conn.Publisher().Publish(ctx, msgs)
			if err != nil {
				t.Fatalf("publish: %v", err)
			}
			if res.Duplicates != 0 {
				t.Fatalf("publish: got %d messages dropped as duplicates; want none (message ids must differ)", res.Duplicates)
			}

			w := startWorker(t, d, b, "--exit-when-idle", "2s")
			s := wantCleanExit(t, "worker", w)
			if got, want := s.Worker.DeadLettered, int64(len(invalid)); got != want {
				t.Errorf("dead-lettered: got %d; want %d", got, want)
			}
			if got, want := s.Worker.Accepted, int64(good); got != want {
				t.Errorf("accepted: got %d; want %d", got, want)
			}
			if got, want := s.Worker.Rejected, int64(len(rejected)); got != want {
				t.Errorf("rejected: got %d; want %d", got, want)
			}

			dead, err := conn.DeadLetters(ctx)
			if err != nil {
				t.Fatalf("dead letters: %v", err)
			}
			if got, want := len(dead), len(invalid); got != want {
				t.Errorf("dead letters: got %d; want %d: %+v", got, want, dead)
			}
			byBody := map[string]worker.DeadLetter{}
			for _, dl := range dead {
				byBody[string(dl.Data)] = dl
			}
			for _, m := range invalid {
				t.Run(m.name, func(t *testing.T) {
					dl, ok := byBody[m.body]
					if !ok {
						t.Fatalf("dead letter of %s: got none; want one", m.body)
					}
					if dl.Subject != worker.SubjectOrderPlaced {
						t.Errorf("subject: got %q; want %q", dl.Subject, worker.SubjectOrderPlaced)
					}
					if !strings.Contains(dl.Reason, m.reason) {
						t.Errorf("reason: got %q; want it to contain %q", dl.Reason, m.reason)
					}
					t.Logf("reason: %s", dl.Reason)
				})
			}

			for _, m := range rejected {
				var status, reason string
				err := d.admin.QueryRowContext(ctx, "SELECT status, reason FROM `"+d.name+"`.orders WHERE id = ?", m.id).Scan(&status, &reason)
				if err != nil {
					t.Errorf("order %s: %v", m.id, err)
					continue
				}
				if status != string(shop.Rejected) || reason != m.reason {
					t.Errorf("order %s: got %s %q; want %s %q", m.id, status, reason, shop.Rejected, m.reason)
				}
			}
			var accepted, stored int
			err = d.admin.QueryRowContext(ctx, "SELECT COALESCE(SUM(status = 'accepted'), 0), COUNT(*) FROM `"+d.name+"`.orders").Scan(&accepted, &stored)
			if err != nil {
				t.Fatalf("count orders: %v", err)
			}
			if accepted != good || stored != good+len(rejected) {
				t.Errorf("orders stored: got %d (%d accepted); want %d (%d accepted): no invalid one stored", stored, accepted, good+len(rejected), good)
			}
		})
	}
}

// TestWorkerPoisonOversized: on NATS, an invalid message so near the
// server's max_payload that its dead-letter copy, with the reason headers,
// is over it is dropped (terminated, logged, counted) rather than
// redelivered for ever, and the worker still goes idle and exits 0.
func TestWorkerPoisonOversized(t *testing.T) {
	b := setupBroker(t, "nats")
	d := newShopDB(t, "poolset_t_wk_oversized")
	seedShop(t, d)
	conn := openTestBroker(t, b)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	// nats-server's default max_payload is 1 MiB; the body leaves room
	// for the publish's own Nats-Msg-Id header only.
	body := []byte(strings.Repeat("x", 1<<20-100))
	msgs := []worker.Message{{Subject: worker.SubjectOrderPlaced, ID: "big", Data: body}}
	if _, err := conn.Publisher().Publish(ctx, msgs); err != nil {
		t.Fatalf("publish: %v", err)
	}

	w := startWorker(t, d, b, "--exit-when-idle", "2s")
	s := wantCleanExit(t, "worker", w)
	if got, want := [2]int64{s.Worker.Dropped, s.Worker.DeadLettered}, [2]int64{1, 0}; got != want {
		t.Errorf("dropped, dead-lettered: got %d; want %d", got, want)
	}
	if !strings.Contains(w.stderr.String(), "dropped a message") {
		t.Errorf("worker log: got no %q\n%s", "dropped a message", tail(w.stderr.String(), 20))
	}
	if n, err := conn.Pending(ctx); err != nil || n != 0 {
		t.Errorf("pending: got %d, %v; want 0", n, err)
	}
	if dead, err := conn.DeadLetters(ctx); err != nil || len(dead) != 0 {
		t.Errorf("dead letters: got %d, %v; want none", len(dead), err)
	}
}
