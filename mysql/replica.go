package mysql

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

// DefaultMaxLag is the replication lag past which a ReplicaCheck takes a
// replica out of the rotation: Replica's when its maxLag is 0.
const DefaultMaxLag = time.Second

// ErrNotCaughtUp is wrapped by ReplicaCheck's error for a replica that is
// not replicating or lags too far.
var ErrNotCaughtUp = errors.New("mysql: replica not caught up")

// ReplicaCheck is a poolset.HealthCheck for one replica: Check, and the
// lag it last measured. Replica sets one on the read pools it builds; to
// set one yourself, give each read pool its own:
//
//	pc.Health = mysql.NewReplicaCheck(maxLag)
//
// Check fails when the server does not answer, when its replication IO or
// SQL thread is not running, or when its lag is unknown or above maxLag. A
// server that is not a replica at all (SHOW SLAVE STATUS has no row)
// passes: it is a read-only pool on a standalone server.
//
// The lag is the larger of two readings from the replica's own status.
// Seconds_Behind_Master counts whole seconds, so a reading of n proves
// only that the replica is more than n-1 s behind; alone it could not hold
// a limit under a second, and it reads 0 when the primary's clock runs
// ahead. On MariaDB the check also compares the replica's GTID positions:
// the transactions it has received from the primary (Gtid_IO_Pos) against
// those it has applied (@@gtid_slave_pos). A received position not yet
// applied is stamped by the first check that sees it, and the lag is the
// age of the oldest such position, known to within one check interval. A
// replica stuck behind a long transaction or a lock thus leaves the
// rotation between maxLag and maxLag plus two check intervals after the
// transaction arrived (a limit below the interval acts like the interval).
// Neither reading sees transactions the IO thread has not received yet.
//
// Its methods are safe for concurrent use.
type ReplicaCheck struct {
	maxLag time.Duration
	clock  lagClock
	lag    atomic.Int64 // nanoseconds; -1 while unknown
}

// NewReplicaCheck returns a check that fails past maxLag (DefaultMaxLag
// when maxLag <= 0). Its lag is unknown until its first check.
func NewReplicaCheck(maxLag time.Duration) *ReplicaCheck {
	if maxLag <= 0 {
		maxLag = DefaultMaxLag
	}
	c := &ReplicaCheck{maxLag: maxLag}
	c.lag.Store(-1)
	return c
}

// Lag returns the lag the last check measured, as ReplicaCheck describes
// it: at least this far behind. It is unknown (false) before the first
// check, after a check that failed for another reason than lag, and on a
// server that is not a replica.
func (c *ReplicaCheck) Lag() (time.Duration, bool) {
	n := c.lag.Load()
	return time.Duration(n), n >= 0
}

// Check is the check: see ReplicaCheck.
func (c *ReplicaCheck) Check(ctx context.Context, conn *sql.Conn) error {
	lag, err := c.measure(ctx, conn)
	if lag < 0 {
		c.lag.Store(-1)
	} else {
		c.lag.Store(int64(lag))
	}
	return err
}

// measure returns the replica's lag, or -1 when it is unknown, and an
// error when the replica is not replicating or cannot tell.
func (c *ReplicaCheck) measure(ctx context.Context, conn *sql.Conn) (time.Duration, error) {
	st, err := ReplicaStatus(ctx, conn)
	if err != nil || st == nil {
		return -1, err
	}
	if io := st["Slave_IO_Running"]; io != "Yes" {
		return -1, fmt.Errorf("%w: IO thread %s (%s)", ErrNotCaughtUp, io, st["Last_IO_Error"])
	}
	if s := st["Slave_SQL_Running"]; s != "Yes" {
		return -1, fmt.Errorf("%w: SQL thread %s (%s)", ErrNotCaughtUp, s, st["Last_SQL_Error"])
	}
	secs, err := strconv.Atoi(st["Seconds_Behind_Master"])
	if err != nil {
		return -1, fmt.Errorf("%w: lag unknown", ErrNotCaughtUp)
	}
	// Event times are whole seconds, so a reading of secs means more than
	// secs-1 seconds behind, no more is sure: a replica 0.1 s behind can
	// read 1.
	lag := time.Duration(max(secs-1, 0)) * time.Second
	if secs > 0 && lag >= c.maxLag {
		return lag, fmt.Errorf("%w: %ds behind (Seconds_Behind_Master), over the %s limit", ErrNotCaughtUp, secs, c.maxLag)
	}
	received, ok := st["Gtid_IO_Pos"]
	if !ok {
		return lag, nil // MySQL: Seconds_Behind_Master is all there is
	}
	var applied string
	if err := conn.QueryRowContext(ctx, "SELECT @@gtid_slave_pos").Scan(&applied); err != nil {
		return -1, fmt.Errorf("mysql: replica status: %w", err)
	}
	gtidLag, err := c.clock.observe(received, applied, time.Now())
	if err != nil {
		return -1, fmt.Errorf("%w: %v", ErrNotCaughtUp, err)
	}
	if gtidLag > c.maxLag {
		return gtidLag, fmt.Errorf("%w: %s behind (received %s, applied %s), over the %s limit",
			ErrNotCaughtUp, gtidLag.Round(time.Millisecond), received, applied, c.maxLag)
	}
	return max(lag, gtidLag), nil
}

// gtidPos is a MariaDB GTID position: the last sequence number applied in
// each replication domain. Sequence numbers grow within a domain whatever
// the server id, so comparing them per domain orders positions.
type gtidPos map[uint64]uint64

// parseGTIDPos parses a position such as "0-1-42,1-2-7"; "" is the empty
// position.
func parseGTIDPos(s string) (gtidPos, error) {
	p := gtidPos{}
	for _, g := range strings.Split(s, ",") {
		g = strings.TrimSpace(g)
		if g == "" {
			continue
		}
		parts := strings.Split(g, "-")
		if len(parts) != 3 {
			return nil, fmt.Errorf("bad GTID %q in position %q", g, s)
		}
		domain, err1 := strconv.ParseUint(parts[0], 10, 32)
		_, err2 := strconv.ParseUint(parts[1], 10, 32)
		seq, err3 := strconv.ParseUint(parts[2], 10, 64)
		if err := errors.Join(err1, err2, err3); err != nil {
			return nil, fmt.Errorf("bad GTID %q in position %q", g, s)
		}
		p[domain] = max(p[domain], seq)
	}
	return p, nil
}

// covers reports whether p includes every transaction of q.
func (p gtidPos) covers(q gtidPos) bool {
	for d, seq := range q {
		if p[d] < seq {
			return false
		}
	}
	return true
}

// maxPending bounds the positions a lagClock remembers. Past it the newest
// is overwritten, which keeps the oldest (the one the lag is measured from)
// and only coarsens what follows it.
const maxPending = 64

// lagClock measures how long a replica has had received transactions it
// has not applied: it remembers each received position it saw unapplied,
// with the time it first saw it.
type lagClock struct {
	mu      sync.Mutex
	pending []pendingPos
}

type pendingPos struct {
	raw  string
	pos  gtidPos
	seen time.Time
}

// observe records a check's reading at now and returns the lag: 0 when
// applied covers received, else the age of the oldest received position
// not yet applied.
func (c *lagClock) observe(received, applied string, now time.Time) (time.Duration, error) {
	rp, err := parseGTIDPos(received)
	if err != nil {
		return 0, err
	}
	ap, err := parseGTIDPos(applied)
	if err != nil {
		return 0, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	keep := c.pending[:0]
	for _, p := range c.pending {
		// Drop what was applied, and what the received position no
		// longer covers (the replica was reset or repointed), which
		// would otherwise wait forever.
		if !ap.covers(p.pos) && rp.covers(p.pos) {
			keep = append(keep, p)
		}
	}
	c.pending = keep
	if !ap.covers(rp) {
		switch n := len(c.pending); {
		case n > 0 && c.pending[n-1].raw == received:
		case n == maxPending:
			c.pending[n-1] = pendingPos{raw: received, pos: rp, seen: c.pending[n-1].seen}
		default:
			c.pending = append(c.pending, pendingPos{raw: received, pos: rp, seen: now})
		}
	}
	if len(c.pending) == 0 {
		return 0, nil
	}
	return now.Sub(c.pending[0].seen), nil
}

// ReplicaStatus returns SHOW SLAVE STATUS's first row by column (NULL
// columns left out), or nil when the server is not a replica.
func ReplicaStatus(ctx context.Context, conn *sql.Conn) (map[string]string, error) {
	rows, err := conn.QueryContext(ctx, "SHOW SLAVE STATUS")
	if err != nil {
		return nil, fmt.Errorf("mysql: replica status: %w", err)
	}
	all, err := rowMaps(rows)
	if err != nil {
		return nil, fmt.Errorf("mysql: replica status: %w", err)
	}
	if len(all) == 0 {
		return nil, nil
	}
	return all[0], nil
}

// GTIDPositions are MariaDB's replication positions, as a
// poolset.Positions: the primary reads the GTID of a connection's last
// commit (SELECT @@last_gtid), and a replica waits for it with
// MASTER_GTID_WAIT. Primary and Replica set it. The zero value is ready to
// use and safe for concurrent use. On MySQL, which has neither, reading the
// position fails and reads under ReadYourWrites go to the primary.
type GTIDPositions struct{}

// PositionQuery returns SELECT @@last_gtid.
func (GTIDPositions) PositionQuery() string { return "SELECT @@last_gtid" }

// WaitPosition waits up to timeout for conn's server to have applied the
// GTID position pos (MASTER_GTID_WAIT) and reports whether it did.
func (GTIDPositions) WaitPosition(ctx context.Context, conn *sql.Conn, pos string, timeout time.Duration) (bool, error) {
	if pos == "" {
		return true, nil
	}
	var res int
	if err := conn.QueryRowContext(ctx, "SELECT MASTER_GTID_WAIT(?, ?)", pos, timeout.Seconds()).Scan(&res); err != nil {
		return false, fmt.Errorf("mysql: wait for gtid %s: %w", pos, err)
	}
	return res == 0, nil
}

var (
	_ poolset.HealthCheck = (*ReplicaCheck)(nil)
	_ poolset.Positions   = GTIDPositions{}
)
