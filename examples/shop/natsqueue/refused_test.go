package natsqueue_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/poolset/poolset/examples/shop/natsqueue"
	"github.com/poolset/poolset/examples/shop/worker"
)

// jsConn returns a JetStream context on a connection of the test's own to
// url, closed when t ends.
func jsConn(t testing.TB, url string) (*natsgo.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := natsgo.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// TestDeadLetterRefused: a message whose dead-letter copy the server
// refuses for good makes DeadLetter fail with worker.ErrDeadLetterRefused
// and stay unsettled; Drop then terminates it, and it never comes back.
func TestDeadLetterRefused(t *testing.T) {
	cases := []struct {
		name string
		// body returns the message body, after limiting the dead stream
		// if the case needs it.
		body func(t *testing.T, url string, opts natsqueue.Options) []byte
	}{{
		// The original fits in the server's max_payload; its copy, with
		// the reason and the other headers, does not (natsqueue.ErrMaxPayload).
		name: "max payload",
		body: func(t *testing.T, url string, _ natsqueue.Options) []byte {
			nc, _ := jsConn(t, url)
			return []byte(strings.Repeat("x", int(nc.MaxPayload())-100))
		},
	}, {
		// The dead stream takes no message over 1 KiB (JetStream error
		// 10054).
		name: "dead stream max msg size",
		body: func(t *testing.T, url string, opts natsqueue.Options) []byte {
			_, js := jsConn(t, url)
			ctx := context.Background()
			s, err := js.Stream(ctx, opts.DeadStream)
			if err != nil {
				t.Fatal(err)
			}
			cfg := s.CachedInfo().Config
			cfg.MaxMsgSize = 1024
			if _, err := js.UpdateStream(ctx, cfg); err != nil {
				t.Fatal(err)
			}
			return []byte(strings.Repeat("x", 2048))
		},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			eachServer(t, func(t *testing.T, url string) {
				opts := testOptions(t, url)
				// A short AckWait, so that a message the server had not
				// terminated would come back within fetchNone's wait.
				opts.AckWait = time.Second
				b := open(t, opts)
				body := tc.body(t, url, opts)
				publish(t, b, []worker.Message{{Subject: worker.SubjectOrderPlaced, ID: "big", Data: body}})
				src := source(t, b)
				d := fetchN(t, src, 1)[0]
				ctx := context.Background()

				reason := "invalid order: the body is over 65536 bytes; " + strings.Repeat("r", 100)
				err := d.DeadLetter(ctx, reason)
				if !errors.Is(err, worker.ErrDeadLetterRefused) {
					t.Fatalf("DeadLetter: err = %v; want %v", err, worker.ErrDeadLetterRefused)
				}
				t.Logf("DeadLetter: %v", err)
				waitPending(t, b, 1) // unsettled
				if err := d.Drop(ctx, reason); err != nil {
					t.Fatalf("Drop after a refused DeadLetter: %v", err)
				}
				if err := d.Drop(ctx, reason); !errors.Is(err, worker.ErrAlreadySettled) {
					t.Errorf("second Drop: err = %v; want %v", err, worker.ErrAlreadySettled)
				}
				waitPending(t, b, 0)
				fetchNone(t, src, 2500*time.Millisecond)
				waitStreamMsgs(t, url, opts.Stream, 0)
				if dead, err := b.DeadLetters(ctx); err != nil || len(dead) != 0 {
					t.Errorf("DeadLetters() = %d, %v; want none", len(dead), err)
				}
			})
		})
	}
}

func TestIsRefused(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{natsgo.ErrMaxPayload, true},
		{errors.Join(errors.New("publish"), natsgo.ErrMaxPayload), true},
		{jetstream.ErrStreamMessageExceedsMaximum, true},
		{&jetstream.APIError{Code: 503, ErrorCode: 10077, Description: "maximum bytes exceeded"}, true},
		{natsgo.ErrTimeout, false},
		{jetstream.ErrNoStreamResponse, false},
		{context.DeadlineExceeded, false},
		{&jetstream.APIError{Code: 503, ErrorCode: 10008, Description: "jetstream cluster not available"}, false},
	}
	for _, tt := range tests {
		if got := natsqueue.IsRefused(tt.err); got != tt.want {
			t.Errorf("IsRefused(%v) = %v; want %v", tt.err, got, tt.want)
		}
	}
}
