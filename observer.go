package poolset

import (
	"sync"
	"sync/atomic"
	"time"
)

// An Observer is told of each connection a set's pools lend, take back and
// open, as it happens: for instruments that record each event themselves,
// such as OpenTelemetry histograms (see package otelmetrics). The pools keep
// their own histograms of the same events in their stats, so an Observer
// is needed only by code that must see every event.
//
// The methods are called on the goroutine of the statement that caused the
// event, while it waits for its result: they must be quick, must not block,
// and must be safe for concurrent use. The names passed are the pool's and
// the repository's (Unattributed for statements whose context names none).
type Observer interface {
	// ObserveWait is called when a repository's call got a connection,
	// with how long it took to get it, and when its wait ended with the
	// acquire timeout (timedOut). For a Handle's call the wait runs from
	// the call to the checkout: an idle connection's few microseconds, a
	// new connection's connect, or the queue of a full pool. Statements
	// through a pool's *sql.DB (Pool.DB, with or without WithRepo) report
	// 0: poolset does not see them begin.
	ObserveWait(pool, repo string, wait time.Duration, timedOut bool)
	// ObserveHold is called when a connection comes back to the pool (or
	// is closed) with how long the repository held it.
	ObserveHold(pool, repo string, hold time.Duration)
	// ObserveCreate is called when the pool opened a new connection to
	// its server, with how long the driver took.
	ObserveCreate(pool string, took time.Duration)
}

// observers is a set's list of observers, replaced whole on each change so
// that the pools read it with one atomic load.
type observers struct {
	mu   sync.Mutex
	list atomic.Pointer[[]*observerEntry]
}

type observerEntry struct{ o Observer }

// Observe adds o to the observers of every pool of the set and returns the
// function that removes it (safe to call more than once). With no observer,
// the pools pay one atomic load per event. It is safe for concurrent use.
func (s *Set) Observe(o Observer) (stop func()) {
	e := &observerEntry{o: o}
	s.obs.mu.Lock()
	defer s.obs.mu.Unlock()
	var cur []*observerEntry
	if p := s.obs.list.Load(); p != nil {
		cur = *p
	}
	next := append(append([]*observerEntry(nil), cur...), e)
	s.obs.list.Store(&next)
	return func() {
		s.obs.mu.Lock()
		defer s.obs.mu.Unlock()
		var cur []*observerEntry
		if p := s.obs.list.Load(); p != nil {
			cur = *p
		}
		next := make([]*observerEntry, 0, len(cur))
		for _, x := range cur {
			if x != e {
				next = append(next, x)
			}
		}
		if len(next) == 0 {
			s.obs.list.Store(nil)
			return
		}
		s.obs.list.Store(&next)
	}
}

// observeWait records a wait of rs on p: in rs's histogram, and with the
// set's observers.
func (p *Pool) observeWait(rs *repoStats, wait time.Duration, timedOut bool) {
	rs.waitHist.observe(wait)
	if l := p.set.obs.list.Load(); l != nil {
		for _, e := range *l {
			e.o.ObserveWait(p.cfg.Name, rs.name, wait, timedOut)
		}
	}
}

// observeHold records a hold of a connection of p by rs.
func (p *Pool) observeHold(rs *repoStats, hold time.Duration) {
	rs.holdHist.observe(hold)
	if l := p.set.obs.list.Load(); l != nil {
		for _, e := range *l {
			e.o.ObserveHold(p.cfg.Name, rs.name, hold)
		}
	}
}

// observeCreate records a new connection of p that took took to open.
func (p *Pool) observeCreate(took time.Duration) {
	p.create.observe(took)
	if l := p.set.obs.list.Load(); l != nil {
		for _, e := range *l {
			e.o.ObserveCreate(p.cfg.Name, took)
		}
	}
}
