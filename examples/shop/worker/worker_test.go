package worker_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/poolset/poolset/examples/shop/shop"
	"github.com/poolset/poolset/examples/shop/worker"
)

// The worker's shutdown, outage and grouping behaviour, in-process, on an
// in-memory broker and store (mem_test.go). Each test asserts counts and
// states, never durations; the subprocess tests of cmd/shop cover what
// only a real process, broker and database show.

// TestDrainFinishesInFlight: the first signal while orders are being
// placed stops intake (the source is stopped, what is still queued stays
// queued) and lets every order in flight finish: each is acked once,
// nothing is nak'ed or lost, and the summary counts them.
func TestDrainFinishesInFlight(t *testing.T) {
	defer goleak.VerifyNone(t)
	for _, c := range []struct {
		name    string
		cfg     worker.Config
		batch   bool // the source acks a group in one call
		publish int
		stuck   int // statements in flight at the signal
		taken   int // messages taken at the signal
	}{
		// Four single-order transactions in flight, the limit: two
		// messages stay queued.
		{name: "one per transaction", cfg: worker.Config{Group: 1, Concurrency: 4}, publish: 6, stuck: 4, taken: 4},
		// Two groups of three: one placing, one waiting for the only
		// group slot.
		{name: "grouped", cfg: worker.Config{Group: 3, GroupConcurrency: 1}, batch: true, publish: 6, stuck: 1, taken: 6},
	} {
		t.Run(c.name, func(t *testing.T) {
			q, s := newMemQueue(), newMemStore()
			s.block()
			for i := range c.publish {
				q.publish(worker.SubjectOrderPlaced, orderMsg(fmt.Sprintf("o-%d", i)))
			}
			var src worker.Source = q
			if c.batch {
				src = batchQueue{q}
			}
			r := start(t, s, src, c.cfg)
			waitFor(t, "statements in flight", func() bool { return s.waitingNow() == c.stuck })
			waitFor(t, "messages taken", func() bool { return r.w.Stats().InFlight == int64(c.taken) })

			r.cancel() // the first signal
			waitFor(t, "intake to stop", func() bool { return q.stopCalls() == 1 })
			if got := r.w.Stats(); got.Acked != 0 || got.InFlight != int64(c.taken) {
				t.Errorf("draining: acked %d, in flight %d; want 0, %d", got.Acked, got.InFlight, c.taken)
			}
			s.release()
			sum := r.wait(t)

			if got := outcomes(t, q); got["ack"] != c.taken || len(got) != 1 {
				t.Errorf("settles: got %v; want ack: %d", got, c.taken)
			}
			if got, want := q.queued(), c.publish-c.taken; got != want {
				t.Errorf("still queued: got %d; want %d", got, want)
			}
			for id, n := range s.storedCounts() {
				if n != 1 {
					t.Errorf("order %s stored %d times; want 1", id, n)
				}
			}
			want := worker.Summary{Received: int64(c.taken), Acked: int64(c.taken), Accepted: int64(c.taken), Drained: true}
			if got := counts(sum); got != want {
				t.Errorf("summary: got %+v; want %+v", got, want)
			}
		})
	}
}

// TestDrainDeadlineHandsBack: work in flight that has not finished by the
// drain deadline is handed back (nak'ed at once) and counted as abandoned,
// and the summary says the drain did not finish. The statements are
// interrupted when the store can, else cancelled.
func TestDrainDeadlineHandsBack(t *testing.T) {
	defer goleak.VerifyNone(t)
	for _, interruptible := range []bool{true, false} {
		t.Run(fmt.Sprintf("interruptible=%v", interruptible), func(t *testing.T) {
			q, s := newMemQueue(), newMemStore()
			s.interruptible = interruptible
			s.block() // never released: nothing finishes
			const n = 4
			for i := range n {
				q.publish(worker.SubjectOrderPlaced, orderMsg(fmt.Sprintf("o-%d", i)))
			}
			r := start(t, s, q, worker.Config{Group: 1, Concurrency: n, DrainTimeout: 50 * time.Millisecond})
			waitFor(t, "statements in flight", func() bool { return s.waitingNow() == n })

			r.cancel()
			sum := r.wait(t)

			if got := outcomes(t, q); got["nak"] != n || len(got) != 1 {
				t.Errorf("settles: got %v; want nak: %d", got, n)
			}
			for _, d := range q.fetched() {
				if _, delay, _ := d.state(); delay != 0 {
					t.Errorf("delivery %s nak'ed with a delay; want at once", d.data)
				}
			}
			if got := q.queued(); got != n { // handed back: the broker has them again
				t.Errorf("queued again: got %d; want %d", got, n)
			}
			if got := s.storedCounts(); len(got) != 0 {
				t.Errorf("stored: got %v; want none", got)
			}
			want := worker.Summary{Received: n, Abandoned: n, Drained: false}
			if interruptible {
				want.Interrupted = n
			}
			if got := counts(sum); got != want {
				t.Errorf("summary: got %+v; want %+v", got, want)
			}
		})
	}
}

// TestSecondSignalSkipsDrain: the second signal (SkipDrain, idempotent)
// ends a drain that has a long deadline at once: the groups in flight, the
// one placing and the one waiting for a slot, are handed back, every
// message settled once. The third signal is the command's (exit at once):
// cmd/shop's TestSignals.
func TestSecondSignalSkipsDrain(t *testing.T) {
	defer goleak.VerifyNone(t)
	q, s := newMemQueue(), newMemStore()
	s.block()
	const n = 4
	for i := range n {
		q.publish(worker.SubjectOrderPlaced, orderMsg(fmt.Sprintf("o-%d", i)))
	}
	r := start(t, s, q, worker.Config{Group: 2, GroupConcurrency: 1, DrainTimeout: time.Hour})
	waitFor(t, "a group in flight", func() bool { return s.waitingNow() == 1 && r.w.Stats().InFlight == n })

	r.cancel() // the first signal: drain, for up to an hour
	waitFor(t, "intake to stop", func() bool { return q.stopCalls() == 1 })
	r.w.SkipDrain() // the second
	r.w.SkipDrain()
	sum := r.wait(t)

	if got := outcomes(t, q); got["nak"] != n || len(got) != 1 {
		t.Errorf("settles: got %v; want nak: %d", got, n)
	}
	if got := q.queued(); got != n {
		t.Errorf("queued again: got %d; want %d", got, n)
	}
	want := worker.Summary{Received: n, Abandoned: n, Interrupted: 1, Drained: false}
	if got := counts(sum); got != want {
		t.Errorf("summary: got %+v; want %+v", got, want)
	}
}

// TestOutageHoldsMessages: while the database does not answer, the
// messages in flight are held, not nak'ed or dead-lettered: the worker is
// not ready, reports them held, and the keeper extends each before the
// broker's settle deadline; once the database answers they are placed and
// each acked once. One outage is counted.
func TestOutageHoldsMessages(t *testing.T) {
	defer goleak.VerifyNone(t)
	for _, c := range []struct {
		name       string
		users      int // registrations, placed before the orders
		orders     int
		group      int
		registered int64
	}{
		{name: "registration", users: 1, orders: 2, group: 1, registered: 1},
		{name: "group of orders", orders: 4, group: 4},
	} {
		t.Run(c.name, func(t *testing.T) {
			q, s := newMemQueue(), newMemStore()
			q.extendEvery = 30 * time.Millisecond
			s.setDown(true)
			for i := range c.users {
				q.publish(worker.SubjectUserRegistered, worker.EncodeUser(shop.User{ID: int64(i + 1), Email: "u@example.com", Name: "u"}))
			}
			for i := range c.orders {
				q.publish(worker.SubjectOrderPlaced, orderMsg(fmt.Sprintf("o-%d", i)))
			}
			n := c.users + c.orders
			r := start(t, s, q, worker.Config{Group: c.group})
			waitFor(t, "the outage", r.w.DatabaseDown)
			waitFor(t, "the first messages held", func() bool { return r.w.Stats().Held > 0 })
			// Every message held is extended, again and again.
			waitFor(t, "extensions", func() bool {
				ds := q.fetched()
				for _, d := range ds {
					if d.extends.Load() < 2 {
						return false
					}
				}
				return len(ds) > 0
			})
			if r.w.Ready() {
				t.Error("Ready during the outage: got true; want false")
			}
			held := r.w.Stats()
			if held.Outages != 1 || held.Acked != 0 || held.Naked != 0 || held.DeadLettered != 0 || held.Held != held.InFlight {
				t.Errorf("during the outage: got %+v; want 1 outage, all in flight held, none settled", counts(held))
			}

			s.setDown(false)
			waitFor(t, "every message acked", func() bool { return r.w.Stats().Acked == int64(n) })
			if !r.w.Ready() || r.w.DatabaseDown() {
				t.Errorf("after the outage: ready %v, down %v; want true, false", r.w.Ready(), r.w.DatabaseDown())
			}
			r.cancel()
			sum := r.wait(t)

			if got := outcomes(t, q); got["ack"] != n || len(got) != 1 {
				t.Errorf("settles: got %v; want ack: %d", got, n)
			}
			if got := len(q.fetched()); got != n {
				t.Errorf("deliveries: got %d; want %d (none redelivered)", got, n)
			}
			for id, k := range s.storedCounts() {
				if k != 1 {
					t.Errorf("order %s stored %d times; want 1", id, k)
				}
			}
			if sum.Extended < int64(2*n) {
				t.Errorf("extended: got %d; want at least %d", sum.Extended, 2*n)
			}
			want := worker.Summary{Received: int64(n), Acked: int64(n), Accepted: int64(c.orders), Registered: c.registered, Outages: 1, Drained: true}
			if got := counts(sum); got != want {
				t.Errorf("summary: got %+v; want %+v", got, want)
			}
		})
	}
}

// TestGroupWithPoisonOrder: a group whose transaction fails because of one
// order is placed one by one: the other orders are stored and acked once
// each; the poison order is nak'ed for a retry until its last delivery,
// then dead-lettered once with its error. No order is stored twice.
func TestGroupWithPoisonOrder(t *testing.T) {
	defer goleak.VerifyNone(t)
	q, s := newMemQueue(), newMemStore()
	s.poison["o-2"] = true
	const n, maxDeliver = 5, 3
	for i := range n {
		q.publish(worker.SubjectOrderPlaced, orderMsg(fmt.Sprintf("o-%d", i)))
	}
	r := start(t, s, batchQueue{q}, worker.Config{Group: n, GroupConcurrency: 1, MaxDeliver: maxDeliver, RetryDelay: time.Millisecond})
	waitFor(t, "the poison order dead-lettered", func() bool { return r.w.Stats().DeadLettered == 1 })
	r.cancel()
	sum := r.wait(t)

	if got := outcomes(t, q); got["ack"] != n-1 || got["nak"] != maxDeliver-1 || got["dead-letter"] != 1 || len(got) != 3 {
		t.Errorf("settles: got %v; want ack: %d, nak: %d, dead-letter: 1", got, n-1, maxDeliver-1)
	}
	for _, d := range q.fetched() {
		settled, delay, _ := d.state()
		poison := strings.Contains(string(d.data), `"o-2"`)
		switch {
		case poison && d.delivered < maxDeliver && (settled != "nak" || delay <= 0):
			t.Errorf("poison delivery %d: %s, delay %v; want a nak with a delay", d.delivered, settled, delay)
		case poison && d.delivered == maxDeliver && settled != "dead-letter":
			t.Errorf("poison delivery %d: %s; want dead-letter", d.delivered, settled)
		case !poison && (settled != "ack" || d.delivered != 1):
			t.Errorf("order %s delivery %d: %s; want acked on its first delivery", d.data, d.delivered, settled)
		}
	}
	dead := q.deadLetters()
	if len(dead) != 1 || !strings.Contains(string(dead[0].Data), `"o-2"`) ||
		!strings.Contains(dead[0].Reason, fmt.Sprintf("failed %d deliveries", maxDeliver)) || !strings.Contains(dead[0].Reason, errPoison.Error()) {
		t.Errorf("dead letters: got %+v; want o-2's, with its deliveries and error", dead)
	}
	stored := s.storedCounts()
	for i := range n {
		id, want := fmt.Sprintf("o-%d", i), 1
		if id == "o-2" {
			want = 0
		}
		if stored[id] != want {
			t.Errorf("order %s stored %d times; want %d", id, stored[id], want)
		}
	}
	if got := s.groupCalls(); got != 1 {
		t.Errorf("group transactions: got %d; want 1 (then one by one)", got)
	}
	want := worker.Summary{Received: n + maxDeliver - 1, Acked: n - 1, Accepted: n - 1, Naked: maxDeliver - 1, DeadLettered: 1, Drained: true}
	if got := counts(sum); got != want {
		t.Errorf("summary: got %+v; want %+v", got, want)
	}
}

// TestInvalidMessagesDeadLettered: a message that cannot be decoded, or
// has an unknown subject, is dead-lettered at once, never placed; when the
// broker refuses the dead-letter copy, it is dropped instead.
func TestInvalidMessagesDeadLettered(t *testing.T) {
	defer goleak.VerifyNone(t)
	for _, refused := range []bool{false, true} {
		t.Run(fmt.Sprintf("refused=%v", refused), func(t *testing.T) {
			q, s := newMemQueue(), newMemStore()
			q.refuseDead = refused
			q.publish(worker.SubjectOrderPlaced, []byte(`{"id":"o-1",`))
			q.publish(worker.SubjectUserRegistered, []byte(`{"id":0,"email":"x","name":""}`))
			q.publish("shop.unknown", []byte(`{}`))
			q.publish(worker.SubjectOrderPlaced, orderMsg("o-2"))
			r := start(t, s, q, worker.Config{})
			waitFor(t, "every message settled", func() bool {
				st := r.w.Stats()
				return st.Acked+st.DeadLettered+st.Dropped == 4
			})
			r.cancel()
			sum := r.wait(t)

			outcome, want := "dead-letter", worker.Summary{Received: 4, Acked: 1, Accepted: 1, DeadLettered: 3, Drained: true}
			if refused {
				outcome, want.DeadLettered, want.Dropped = "drop", 0, 3
			}
			if got := outcomes(t, q); got[outcome] != 3 || got["ack"] != 1 || len(got) != 2 {
				t.Errorf("settles: got %v; want %s: 3, ack: 1", got, outcome)
			}
			if got := counts(sum); got != want {
				t.Errorf("summary: got %+v; want %+v", got, want)
			}
			if got := s.storedCounts(); len(got) != 1 || got["o-2"] != 1 {
				t.Errorf("stored: got %v; want o-2 once", got)
			}
		})
	}
}

// counts returns s without its times and rates, and without the counters
// that depend on timing (stall pings, busy retries, extensions), for
// comparing with what a test wants.
func counts(s worker.Summary) worker.Summary {
	s.Busy, s.Rate, s.AckLatencyP50, s.AckLatencyP99, s.OutageTime = 0, 0, 0, 0, 0
	s.StallPings, s.BusyRetries, s.Extended = 0, 0, 0
	return s
}
