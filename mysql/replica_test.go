package mysql

import (
	"strconv"
	"testing"
	"time"
)

func TestParseGTIDPos(t *testing.T) {
	p, err := parseGTIDPos("0-1-42, 1-2-7,0-3-40")
	if err != nil {
		t.Fatal(err)
	}
	if len(p) != 2 || p[0] != 42 || p[1] != 7 {
		t.Errorf("got %v; want domain 0 at 42, domain 1 at 7", p)
	}
	if p, err := parseGTIDPos(""); err != nil || len(p) != 0 {
		t.Errorf("empty: got %v, %v; want the empty position", p, err)
	}
	for _, bad := range []string{"0-1", "a-1-2", "0-1-x", "0-1-2-3", "-1-1-2"} {
		if _, err := parseGTIDPos(bad); err == nil {
			t.Errorf("%q: got no error", bad)
		}
	}
}

func TestGTIDPosCovers(t *testing.T) {
	pos := func(s string) gtidPos {
		p, err := parseGTIDPos(s)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		p, q string
		want bool
	}{
		{"0-1-5", "0-1-5", true},
		{"0-1-6", "0-1-5", true},
		{"0-1-4", "0-1-5", false},
		{"0-2-9", "0-1-5", true}, // another server id, same domain
		{"0-1-9", "0-1-5,1-1-1", false},
		{"0-1-9,1-1-1", "0-1-5,1-1-1", true},
		{"", "", true},
		{"0-1-1", "", true},
		{"", "0-1-1", false},
	}
	for _, tt := range tests {
		if got := pos(tt.p).covers(pos(tt.q)); got != tt.want {
			t.Errorf("%q covers %q: got %v; want %v", tt.p, tt.q, got, tt.want)
		}
	}
}

// TestLagClock replays a replica's readings at given times: the lag is the
// age of the oldest received position not yet applied.
func TestLagClock(t *testing.T) {
	t0 := time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	var c lagClock
	steps := []struct {
		ms                int
		received, applied string
		want              time.Duration
	}{
		{0, "0-1-10", "0-1-10", 0},
		{250, "0-1-11", "0-1-10", 0},                       // 11 first seen at 250
		{500, "0-1-12", "0-1-10", 250 * time.Millisecond},  // still behind 11
		{750, "0-1-13", "0-1-11", 250 * time.Millisecond},  // 11 applied; 12 seen at 500
		{1000, "0-1-13", "0-1-11", 500 * time.Millisecond}, // same reading, older
		{1250, "0-1-13", "0-1-13", 0},                      // caught up: forgets all
		{1500, "0-1-14", "0-1-13", 0},
		{1750, "0-1-14,1-2-1", "0-1-14", 0}, // a new domain counts
		{2000, "0-1-14,1-2-1", "0-1-14", 250 * time.Millisecond},
		{2250, "0-1-14,1-2-1", "0-1-14,1-2-1", 0},
		{2500, "0-1-20", "0-1-15", 0},
		{2750, "0-1-9", "0-1-15", 0}, // reset: received went back; 0-1-20 is forgotten
		{3000, "0-1-9", "0-1-15", 0},
	}
	for _, s := range steps {
		got, err := c.observe(s.received, s.applied, at(s.ms))
		if err != nil {
			t.Fatalf("at %d ms: %v", s.ms, err)
		}
		if got != s.want {
			t.Errorf("at %d ms (received %s, applied %s): lag %s; want %s", s.ms, s.received, s.applied, got, s.want)
		}
	}
	if _, err := c.observe("0-1", "", at(2500)); err == nil {
		t.Error("a malformed position: got no error")
	}
}

// TestLagClockBounded: a replica that stays behind while new positions
// keep arriving is remembered in at most maxPending entries, and its lag
// still runs from the oldest.
func TestLagClockBounded(t *testing.T) {
	t0 := time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)
	var c lagClock
	var lag time.Duration
	for i := range 1000 {
		var err error
		lag, err = c.observe("0-1-"+strconv.Itoa(i+2), "0-1-1", t0.Add(time.Duration(i)*time.Second))
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(c.pending) != maxPending {
		t.Errorf("pending: got %d; want %d", len(c.pending), maxPending)
	}
	if lag != 999*time.Second {
		t.Errorf("lag: got %s; want 999s", lag)
	}
}
