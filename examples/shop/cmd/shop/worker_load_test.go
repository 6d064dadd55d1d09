package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestLoadDuplicates: a second load with the same prefix says what the
// broker did with ids it already held. NATS drops them within the stream's
// duplicate window, and load counts them instead of claiming them stored;
// RabbitMQ, which does not deduplicate, stores them all again.
func TestLoadDuplicates(t *testing.T) {
	for _, kind := range workerBrokers {
		t.Run(kind, func(t *testing.T) {
			b := setupBroker(t, kind)
			load := func(orders string, extra ...string) result {
				t.Helper()
				args := append([]string{"load", "--broker", b.url, "--orders", orders, "--prefix", "dup",
					"--users", wkUsers, "--products", wkProducts}, extra...)
				r := runPoolset(t, quickExit(), args...)
				if r.code != exitOK {
					t.Fatalf("load: got exit code %d; want 0\nstdout: %s\nstderr:\n%s", r.code, r.stdout, r.stderr)
				}
				return r
			}

			if r := load("50"); !strings.Contains(r.stdout, "all 50 messages stored") {
				t.Errorf("first load: got %q; want it to say all 50 messages stored", r.stdout)
			}

			// Orders dup-1..dup-60: 1..50 were published above.
			r := load("60", "--json")
			var out struct {
				Result loadResult `json:"result"`
			}
			if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
				t.Fatalf("second load: stdout is not JSON: %v\n%s", err, r.stdout)
			}
			want := [3]int{60, 10, 50} // messages, stored, duplicates
			if kind == "rabbitmq" {
				want = [3]int{60, 60, 0}
			}
			if got := [3]int{out.Result.Messages, out.Result.Stored, out.Result.Duplicates}; got != want {
				t.Errorf("second load: got messages, stored, duplicates %v; want %v\n%s", got, want, r.stdout)
			}

			r = load("60")
			wantText := "0 of 60 messages stored, 60 dropped by the broker as duplicates of ids it already held"
			if kind == "rabbitmq" {
				wantText = "all 60 messages stored"
			}
			if !strings.Contains(r.stdout, wantText) {
				t.Errorf("third load: got %q; want it to contain %q", r.stdout, wantText)
			}
			t.Logf("third load: %s", strings.TrimSpace(r.stdout))

			if kind == "rabbitmq" { // leave the shared queue empty
				ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
				defer cancel()
				if err := openTestBroker(t, b).Purge(ctx); err != nil {
					t.Errorf("purge: %v", err)
				}
			}
		})
	}
}
