package worker

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// fakeDB answers pings while up is true.
type fakeDB struct {
	up    atomic.Bool
	pings atomic.Int64
}

func (f *fakeDB) ping(context.Context) error {
	f.pings.Add(1)
	if f.up.Load() {
		return nil
	}
	return errors.New("connection refused")
}

func newTestOutage(f *fakeDB) *outage {
	return &outage{ping: f.ping, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

func TestOutage(t *testing.T) {
	defer goleak.VerifyNone(t)
	errStmt := errors.New("statement failed")

	t.Run("a failure on a live database is not an outage", func(t *testing.T) {
		f := &fakeDB{}
		f.up.Store(true)
		o := newTestOutage(f)
		if o.down(t.Context(), errStmt, o.epoch()) {
			t.Error("down: got true; want false (the ping answered)")
		}
		if n, _, on := o.stats(); n != 0 || on {
			t.Errorf("stats: got %d outages, on %v; want 0, false", n, on)
		}
		o.stop()
	})

	t.Run("an outage holds until the database answers", func(t *testing.T) {
		f := &fakeDB{}
		o := newTestOutage(f)
		epoch := o.epoch()
		if !o.down(t.Context(), errStmt, epoch) {
			t.Fatal("down: got false; want true (the ping failed)")
		}
		// Another failure during the outage needs no ping of its own.
		pings := f.pings.Load()
		if !o.down(t.Context(), errStmt, epoch) || f.pings.Load() != pings {
			t.Errorf("second down: got pings %d -> %d; want no new ping", pings, f.pings.Load())
		}
		waited := make(chan error, 1)
		go func() { waited <- o.wait(context.Background()) }()
		for f.pings.Load() < pings+3 { // the prober pings on
			time.Sleep(5 * time.Millisecond)
		}
		select {
		case err := <-waited:
			t.Fatalf("wait returned %v while the database was down", err)
		default:
		}
		f.up.Store(true)
		if err := <-waited; err != nil {
			t.Errorf("wait: got %v; want nil", err)
		}
		o.stop() // the prober has ended: goleak checks
		n, took, on := o.stats()
		if n != 1 || on || took <= 0 {
			t.Errorf("stats: got %d outages, %v, on %v; want 1, >0, false", n, took, on)
		}
		// A failure that began before the outage was looked at after it
		// ended: still an outage, though the ping now answers.
		if !o.down(t.Context(), errStmt, epoch) {
			t.Error("down for an operation from before the outage: got false; want true")
		}
		if o.down(t.Context(), errStmt, o.epoch()) {
			t.Error("down after the outage: got true; want false")
		}
	})

	t.Run("shutdown ends the outage and no other begins", func(t *testing.T) {
		f := &fakeDB{}
		o := newTestOutage(f)
		ctx, cancel := context.WithCancel(context.Background())
		if !o.down(ctx, errStmt, o.epoch()) {
			t.Fatal("down: got false; want true")
		}
		cancel()
		if err := o.wait(context.Background()); err != nil {
			t.Errorf("wait: got %v; want nil once the prober stops", err)
		}
		o.stop()
		if _, _, on := o.stats(); on {
			t.Error("outage still on after its context ended")
		}
		if o.down(context.Background(), errStmt, o.epoch()) {
			t.Error("down after stop: got true; want false")
		}
	})
}
