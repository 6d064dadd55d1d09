package postgres

import (
	"testing"
	"time"
)

func TestParseLSN(t *testing.T) {
	for s, want := range map[string]uint64{"0/0": 0, "0/402DEE0": 0x402DEE0, "16/B374D848": 0x16<<32 | 0xB374D848} {
		if got, err := parseLSN(s); err != nil || got != want {
			t.Errorf("parseLSN(%q): got %#x, %v; want %#x", s, got, err, want)
		}
	}
	for _, s := range []string{"", "16", "x/1", "1/x", "100000000/0"} {
		if _, err := parseLSN(s); err == nil {
			t.Errorf("parseLSN(%q): got nil; want an error", s)
		}
	}
}

// TestLSNClock: the lag is the age of the oldest received position not
// replayed, held only once an earlier reading saw it; replay clears it, and
// a receiver restarted from an earlier point drops what lies past it.
func TestLSNClock(t *testing.T) {
	var c lsnClock
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	steps := []struct {
		received, replayed uint64
		ms                 int
		lag                time.Duration
		held               bool
	}{
		{100, 100, 0, 0, false},                       // caught up
		{200, 100, 250, 0, false},                     // 200 first seen
		{300, 100, 500, 250 * time.Millisecond, true}, // still behind 200
		{300, 200, 750, 250 * time.Millisecond, true}, // 200 replayed; 300 seen at 500
		{300, 300, 1000, 0, false},                    // caught up
		{400, 300, 1250, 0, false},                    // 400 first seen
		{350, 300, 1500, 0, false},                    // receiver restarted below 400: 350 first seen
		{350, 350, 1750, 0, false},
	}
	for i, s := range steps {
		lag, held := c.observe(s.received, s.replayed, at(s.ms))
		if lag != s.lag || held != s.held {
			t.Errorf("step %d (received %d, replayed %d): got %v, %v; want %v, %v", i, s.received, s.replayed, lag, held, s.lag, s.held)
		}
	}
	for i := range 2 * maxPending {
		c.observe(uint64(1000+i), 999, at(2000+i))
	}
	if len(c.pending) != maxPending || c.pending[0].lsn != 1000 || c.pending[maxPending-1].lsn != uint64(1000+2*maxPending-1) {
		t.Errorf("pending past the bound: got %d, first %d, last %d; want %d, 1000, the newest", len(c.pending), c.pending[0].lsn, c.pending[maxPending-1].lsn, maxPending)
	}
}
