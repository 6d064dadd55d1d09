package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/poolset/poolset"
)

// ErrNotCaughtUp is wrapped by StandbyCheck's error for a standby that is
// not in recovery, does not stream, or lags too far.
var ErrNotCaughtUp = errors.New("postgres: standby not caught up")

// StandbyCheck is a poolset.HealthCheck for one streaming standby: Check,
// and the lag it last measured. Standby sets one on the read pools it
// builds; to set one yourself, give each read pool its own:
//
//	pc.Health = postgres.NewStandbyCheck(maxLag)
//
// Check fails when the server does not answer, is not in recovery
// (pg_is_in_recovery() is false: it was promoted, or is no standby), its
// WAL receiver is not streaming (pg_stat_wal_receiver has no row, or its
// status is not "streaming"), or its lag is above maxLag. With the set's
// default health interval (250 ms) a standby that stops answering leaves
// the rotation within about two intervals, and comes back at the first
// check that passes.
//
// The lag is the larger of two readings. The first compares the WAL the
// standby has received (pg_last_wal_receive_lsn) with the WAL it has
// replayed (pg_last_wal_replay_lsn): a received position not yet replayed
// is stamped by the first check that sees it, and the lag is the age of
// the oldest such position, known to within one check interval (as
// mysql.ReplicaCheck times GTIDs). The second is the age of the last
// replayed transaction (now() - pg_last_xact_replay_timestamp()), which
// sees lag that built up before the check first looked; it counts only
// while received WAL has waited unreplayed since an earlier check, since
// on an idle primary that timestamp ages without any lag. After a long
// idle spell it may overstate a lag that lasts more than one interval,
// taking the standby out early rather than late. Neither reading sees WAL
// the standby has not received yet.
//
// Its methods are safe for concurrent use.
type StandbyCheck struct {
	maxLag time.Duration
	clock  lsnClock
	lag    atomic.Int64 // nanoseconds; -1 while unknown
}

// NewStandbyCheck returns a check that fails past maxLag (DefaultMaxLag
// when maxLag <= 0). Its lag is unknown until its first check.
func NewStandbyCheck(maxLag time.Duration) *StandbyCheck {
	if maxLag <= 0 {
		maxLag = DefaultMaxLag
	}
	c := &StandbyCheck{maxLag: maxLag}
	c.lag.Store(-1)
	return c
}

// Lag returns the lag the last check measured, as StandbyCheck describes
// it. It is unknown (false) before the first check and after a check that
// failed for another reason than lag.
func (c *StandbyCheck) Lag() (time.Duration, bool) {
	n := c.lag.Load()
	return time.Duration(n), n >= 0
}

// Check is the check: see StandbyCheck.
func (c *StandbyCheck) Check(ctx context.Context, conn *sql.Conn) error {
	lag, err := c.measure(ctx, conn)
	c.lag.Store(int64(max(lag, -1)))
	return err
}

// standbyQuery reads everything a check needs in one round trip.
const standbyQuery = `SELECT pg_is_in_recovery(),
	COALESCE((SELECT status FROM pg_stat_wal_receiver), ''),
	COALESCE(pg_last_wal_receive_lsn()::text, ''),
	COALESCE(pg_last_wal_replay_lsn()::text, ''),
	COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())::float8, -1)`

// measure returns the standby's lag, or -1 when it is unknown, and an
// error when it may not take reads.
func (c *StandbyCheck) measure(ctx context.Context, conn *sql.Conn) (time.Duration, error) {
	var (
		recovery                   bool
		status, received, replayed string
		xactAge                    float64
	)
	if err := conn.QueryRowContext(ctx, standbyQuery).Scan(&recovery, &status, &received, &replayed, &xactAge); err != nil {
		return -1, fmt.Errorf("postgres: standby status: %w", err)
	}
	if !recovery {
		return -1, fmt.Errorf("%w: not in recovery (promoted, or not a standby)", ErrNotCaughtUp)
	}
	if status != "streaming" {
		if status == "" {
			status = "no WAL receiver"
		}
		return -1, fmt.Errorf("%w: WAL receiver %s", ErrNotCaughtUp, status)
	}
	rcv, err1 := parseLSN(received)
	rep, err2 := parseLSN(replayed)
	if err := errors.Join(err1, err2); err != nil {
		return -1, fmt.Errorf("%w: %v", ErrNotCaughtUp, err)
	}
	lag, held := c.clock.observe(rcv, rep, time.Now())
	if held && xactAge > 0 {
		lag = max(lag, time.Duration(xactAge*float64(time.Second)))
	}
	if lag > c.maxLag {
		return lag, fmt.Errorf("%w: %s behind (received %s, replayed %s), over the %s limit",
			ErrNotCaughtUp, lag.Round(time.Millisecond), received, replayed, c.maxLag)
	}
	return lag, nil
}

// parseLSN parses a WAL position as PostgreSQL prints it, "16/B374D848".
func parseLSN(s string) (uint64, error) {
	hi, lo, ok := strings.Cut(s, "/")
	if !ok {
		return 0, fmt.Errorf("bad WAL position %q", s)
	}
	h, err1 := strconv.ParseUint(hi, 16, 32)
	l, err2 := strconv.ParseUint(lo, 16, 32)
	if errors.Join(err1, err2) != nil {
		return 0, fmt.Errorf("bad WAL position %q", s)
	}
	return h<<32 | l, nil
}

// maxPending bounds the positions an lsnClock remembers. Past it the
// newest is overwritten, which keeps the oldest (the one the lag is
// measured from) and only coarsens what follows it.
const maxPending = 64

// lsnClock measures how long a standby has had received WAL it has not
// replayed: it remembers each received position it saw unreplayed, with
// the time it first saw it.
type lsnClock struct {
	mu      sync.Mutex
	pending []pendingLSN
}

type pendingLSN struct {
	lsn  uint64
	seen time.Time
}

// observe records a check's reading at now and returns the lag (0 when
// replayed has reached received, else the age of the oldest received
// position not replayed), and whether that position was seen by an
// earlier check.
func (c *lsnClock) observe(received, replayed uint64, now time.Time) (time.Duration, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	keep := c.pending[:0]
	for _, p := range c.pending {
		// Drop what was replayed, and what lies past the received position
		// (the receiver restarted from an earlier point), which would
		// otherwise wait forever.
		if p.lsn > replayed && p.lsn <= received {
			keep = append(keep, p)
		}
	}
	c.pending = keep
	if received > replayed {
		switch n := len(c.pending); {
		case n > 0 && c.pending[n-1].lsn == received:
		case n == maxPending:
			c.pending[n-1].lsn = received
		default:
			c.pending = append(c.pending, pendingLSN{lsn: received, seen: now})
		}
	}
	if len(c.pending) == 0 {
		return 0, false
	}
	d := now.Sub(c.pending[0].seen)
	return d, d > 0
}

// WALPositions are PostgreSQL's WAL positions, as a poolset.Positions: the
// primary reads its WAL write position after a commit (SELECT
// pg_current_wal_lsn()::text, on the connection that committed, so past
// the commit record), and a standby waits until it has replayed past it.
// Primary and Standby set it. The zero value is ready to use and safe for
// concurrent use.
type WALPositions struct{}

// PositionQuery returns SELECT pg_current_wal_lsn()::text.
func (WALPositions) PositionQuery() string { return "SELECT pg_current_wal_lsn()::text" }

// Bounds of WaitPosition's polling: it sleeps waitFirst between its first
// reads, growing to waitMax.
const (
	waitFirst = time.Millisecond
	waitMax   = 5 * time.Millisecond
)

// WaitPosition waits up to timeout for conn's server, a standby, to have
// replayed the WAL up to pos, and reports whether it did. PostgreSQL 15
// has no wait of its own, so it polls pg_last_wal_replay_lsn() >= pos,
// sleeping 1 ms between reads at first and up to 5 ms later. A server not
// in recovery reports false: its positions are not the primary's. It
// returns early with ctx's error when ctx ends.
func (WALPositions) WaitPosition(ctx context.Context, conn *sql.Conn, pos string, timeout time.Duration) (bool, error) {
	if pos == "" {
		return true, nil
	}
	if _, err := parseLSN(pos); err != nil {
		return false, fmt.Errorf("postgres: wait for WAL position: %w", err)
	}
	deadline := time.Now().Add(timeout)
	sleep := waitFirst
	for {
		var reached sql.NullBool
		if err := conn.QueryRowContext(ctx, "SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn", pos).Scan(&reached); err != nil {
			return false, fmt.Errorf("postgres: wait for WAL position %s: %w", pos, err)
		}
		if reached.Bool {
			return true, nil
		}
		if !reached.Valid || time.Now().Add(sleep).After(deadline) {
			return false, nil
		}
		t := time.NewTimer(sleep)
		select {
		case <-ctx.Done():
			t.Stop()
			return false, ctx.Err()
		case <-t.C:
		}
		sleep = min(2*sleep, waitMax)
	}
}

var (
	_ poolset.HealthCheck = (*StandbyCheck)(nil)
	_ poolset.Positions   = WALPositions{}
)
