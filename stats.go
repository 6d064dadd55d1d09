package poolset

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// PoolStats is a snapshot of one pool and the repositories that use it.
type PoolStats struct {
	Name     string `json:"name"`
	Role     string `json:"role"` // "primary" or "read"
	Kind     string `json:"kind"`
	Address  string `json:"address"` // password shown as ***
	ReadOnly bool   `json:"read_only"`
	Closed   bool   `json:"closed"`
	// Healthy is false while a read pool's health check fails; Unhealthy
	// says why. Leaves and Rejoins count its moves out of and back into
	// the rotation.
	Healthy   bool   `json:"healthy"`
	Unhealthy string `json:"unhealthy,omitempty"`
	Leaves    int64  `json:"leaves"`
	Rejoins   int64  `json:"rejoins"`
	// Lag is the replication lag the read pool's health check last
	// measured, when LagKnown (see HealthCheck.Lag); never on a closed pool.
	Lag      time.Duration `json:"lag_ns"`
	LagKnown bool          `json:"lag_known"`

	MaxOpen int `json:"max_open"`
	Open    int `json:"open"`
	// InUse counts the connections lent to repositories through handles
	// (what the repositories' InUse add up to).
	InUse   int `json:"in_use"`
	Idle    int `json:"idle"`
	Waiting int `json:"waiting"`
	// WaitCount and WaitDuration are database/sql's: waits for a connection
	// because the pool was full.
	WaitCount    int64         `json:"wait_count"`
	WaitDuration time.Duration `json:"wait_ns"`
	Acquires     int64         `json:"acquires"`
	Timeouts     int64         `json:"acquire_timeouts"`
	// CreateTimes is the distribution of the time the driver took to open
	// each of the pool's connections (health checks' included).
	CreateTimes Histogram `json:"create_times"`
	// WaitTimes and HoldTimes add up those of every repository that used
	// the pool, including any left out of Repos.
	WaitTimes Histogram `json:"wait_times"`
	HoldTimes Histogram `json:"hold_times"`

	Repos []RepoStats `json:"repos"`
}

// RepoStats is one repository's use of one pool.
type RepoStats struct {
	Repo string `json:"repo"`
	// Use is "reads", "writes" or "reads+writes".
	Use      string `json:"use"`
	InUse    int64  `json:"in_use"`
	Waiting  int64  `json:"waiting"`
	Acquires int64  `json:"acquires"`
	Queries  int64  `json:"queries"`
	Txs      int64  `json:"txs"`
	// Wait is the total time the repository's Handle calls took to get
	// their connections (WaitTimes.Sum): from the call to the checkout,
	// so an idle connection's few microseconds, a new connection's
	// connect, or the queue of a full pool. Statements through Pool.DB
	// count 0 (poolset does not see them begin).
	Wait time.Duration `json:"wait_ns"`
	// WaitTimes is the distribution of those waits: one per connection
	// lent and one per acquire timeout, so its Count is Acquires+Timeouts.
	WaitTimes Histogram `json:"wait_times"`
	// Hold is the total time connections were held (HoldTimes.Sum), and
	// HoldTimes its distribution: one per connection given back.
	Hold        time.Duration `json:"hold_ns"`
	HoldTimes   Histogram     `json:"hold_times"`
	LongestHold time.Duration `json:"longest_hold_ns"`
	Timeouts    int64         `json:"acquire_timeouts"`
	Leaks       int64         `json:"leaks"`
	// Fallbacks counts reads sent to the primary because no read pool was
	// usable; FallbackFailures counts those refused by FailWithoutReadPool.
	Fallbacks        int64 `json:"fallbacks"`
	FallbackFailures int64 `json:"fallback_failures"`
	// ReadYourWritesReplica counts reads under ReadYourWrites that a read
	// pool served after catching up (on that read pool's stats);
	// ReadYourWritesPrimary those sent to the primary instead (on the
	// primary's).
	ReadYourWritesReplica int64 `json:"ryw_replica"`
	ReadYourWritesPrimary int64 `json:"ryw_primary"`
}

// Stats returns a snapshot of the pool and of each repository that has used
// it, in order of first use.
func (p *Pool) Stats() PoolStats {
	db := p.db.Stats()
	st := PoolStats{
		Name: p.cfg.Name, Role: p.role, Kind: p.cfg.Kind, Address: p.cfg.Address,
		ReadOnly: p.cfg.ReadOnly, Closed: p.closed.Load(), MaxOpen: p.cfg.MaxOpen,
		Open: p.openConns(), InUse: int(p.inUse.Load()), Waiting: int(p.waiting.Load()),
		WaitCount: db.WaitCount, WaitDuration: db.WaitDuration,
		Healthy: p.usable(), CreateTimes: p.create.snapshot(),
	}
	st.Idle = max(st.Open-st.InUse, 0)
	if h := p.health; h != nil {
		st.Leaves, st.Rejoins = h.leaves.Load(), h.rejoins.Load()
		if !st.Closed {
			st.Lag, st.LagKnown = h.check.Lag()
		}
		if r := h.reason.Load(); r != nil && !h.ok.Load() {
			st.Unhealthy = *r
		}
	}
	p.mu.Lock()
	repos := make([]*repoStats, 0, len(p.order))
	for _, n := range p.order {
		repos = append(repos, p.repos[n])
	}
	p.mu.Unlock()
	for _, rs := range repos {
		r := rs.snapshot()
		st.Acquires += r.Acquires
		st.Timeouts += r.Timeouts
		st.WaitTimes.merge(r.WaitTimes)
		st.HoldTimes.merge(r.HoldTimes)
		// A repository is listed once it has used the pool, or holds,
		// waits for or timed out on one of its connections (a statement
		// prepared through Pool.DB, say), so that the repositories'
		// figures add up to the pool's.
		if r.Use == "" && r.InUse == 0 && r.Waiting == 0 && r.Timeouts == 0 &&
			r.Fallbacks == 0 && r.FallbackFailures == 0 && r.ReadYourWritesPrimary == 0 {
			continue
		}
		st.Repos = append(st.Repos, r)
	}
	return st
}

func (rs *repoStats) snapshot() RepoStats {
	use := ""
	switch r, w := rs.reads.Load(), rs.writes.Load(); {
	case r && w:
		use = "reads+writes"
	case r:
		use = "reads"
	case w:
		use = "writes"
	}
	r := RepoStats{
		Repo: rs.name, Use: use, InUse: rs.inUse.Load(), Waiting: rs.waiting.Load(),
		Acquires: rs.acquires.Load(), Queries: rs.queries.Load(), Txs: rs.txs.Load(),
		WaitTimes: rs.waitHist.snapshot(), HoldTimes: rs.holdHist.snapshot(),
		LongestHold: time.Duration(rs.longest.Load()), Timeouts: rs.timeouts.Load(),
		Leaks: rs.leaks.Load(), Fallbacks: rs.fallbacks.Load(), FallbackFailures: rs.fallbackFails.Load(),
		ReadYourWritesReplica: rs.causalReplica.Load(), ReadYourWritesPrimary: rs.causalPrimary.Load(),
	}
	r.Wait, r.Hold = r.WaitTimes.Sum, r.HoldTimes.Sum
	return r
}

// Stats returns a snapshot of every pool: the primary first, then the read
// pools.
func (s *Set) Stats() []PoolStats {
	var out []PoolStats
	for _, p := range s.pools() {
		out = append(out, p.Stats())
	}
	return out
}

// Tree renders the set as the seed's diagram with live numbers: each pool
// with its address (password never shown) and figures, and under it the
// repositories that use it, for reads or writes, with theirs.
func (s *Set) Tree() string {
	var b strings.Builder
	WriteTree(&b, s.Stats())
	return b.String()
}

// WriteTree writes pools, as returned by Set.Stats, as a tree to w.
func WriteTree(w io.Writer, pools []PoolStats) {
	for _, p := range pools {
		flags := ""
		if p.ReadOnly {
			flags += ", read-only"
		}
		if p.Closed {
			flags += ", closed"
		} else if !p.Healthy {
			flags += ", out of rotation: " + p.Unhealthy
		}
		if p.LagKnown {
			flags += ", lag " + fmtDur(p.Lag)
		}
		if p.Leaves+p.Rejoins > 0 {
			flags += fmt.Sprintf(", left the rotation %d times, rejoined %d", p.Leaves, p.Rejoins)
		}
		fmt.Fprintf(w, "%s (%s%s) %s\n", p.Name, p.Kind, flags, p.Address)
		fmt.Fprintf(w, "│  max %d · open %d · in use %d · idle %d · acquired %d · full-pool waits %d (%s) · timeouts %d\n",
			p.MaxOpen, p.Open, p.InUse, p.Idle, p.Acquires, p.WaitCount, fmtDur(p.WaitDuration), p.Timeouts)
		width := 0
		for _, r := range p.Repos {
			width = max(width, len(r.Repo))
		}
		for i, r := range p.Repos {
			branch := "├─"
			if i == len(p.Repos)-1 {
				branch = "└─"
			}
			fmt.Fprintf(w, "%s %-*s  %-12s in use %d · queries %d · tx %d · wait %s (p99 %s) · longest hold %s",
				branch, width, r.Repo, r.Use, r.InUse, r.Queries, r.Txs, fmtDur(r.Wait), fmtDur(r.WaitTimes.Quantile(0.99)), fmtDur(r.LongestHold))
			if r.Timeouts > 0 {
				fmt.Fprintf(w, " · timeouts %d", r.Timeouts)
			}
			if r.Leaks > 0 {
				fmt.Fprintf(w, " · leaks %d", r.Leaks)
			}
			if r.Fallbacks > 0 {
				fmt.Fprintf(w, " · fallback reads %d", r.Fallbacks)
			}
			if r.FallbackFailures > 0 {
				fmt.Fprintf(w, " · refused reads %d", r.FallbackFailures)
			}
			if r.ReadYourWritesReplica > 0 {
				fmt.Fprintf(w, " · read-your-writes served %d", r.ReadYourWritesReplica)
			}
			if r.ReadYourWritesPrimary > 0 {
				fmt.Fprintf(w, " · read-your-writes to primary %d", r.ReadYourWritesPrimary)
			}
			fmt.Fprintln(w)
		}
		if len(p.Repos) == 0 {
			fmt.Fprintln(w, "└─ (no repository yet)")
		}
	}
}

func fmtDur(d time.Duration) string {
	switch {
	case d == 0:
		return "0"
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	case d < time.Second:
		return d.Round(100 * time.Microsecond).String()
	}
	return d.Round(time.Millisecond).String()
}
