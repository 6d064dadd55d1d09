package poolset

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

const (
	rolePrimary = "primary"
	roleRead    = "read"
)

// Set is the pools a service opens once and shares among all its
// repositories. It is safe for concurrent use. Open it once, hand each
// repository a Handle, and Close it when the service stops (in a service
// with other resources, as one step of the service's release stack,
// registered right after Open so that it runs after whatever uses the
// pools).
type Set struct {
	primary *Pool
	reads   []*Pool
	log     *slog.Logger
	leaks   *leakWatch
	rywWait time.Duration

	mu      sync.Mutex
	handles map[string]*Handle

	obs observers

	closeOnce sync.Once
	closeErr  error
}

// Open opens the primary pool and checks that it answers, then the read
// pools, and starts the read pools' health checks and the leak watch. A
// read pool that does not answer at start is logged and kept: its reads
// fall back to the primary until it answers. If Open fails, it closes
// exactly what it had opened (as Close would) before it returns an error
// naming the pool that failed. On success the caller owns the set and
// closes it with Close.
func Open(ctx context.Context, cfg Config) (*Set, error) {
	s := &Set{log: cfg.Logger, handles: make(map[string]*Handle), rywWait: cfg.ReadYourWritesWait}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.rywWait <= 0 {
		s.rywWait = DefaultReadYourWritesWait
	}
	fail := func(err error) (*Set, error) {
		s.close(context.WithoutCancel(ctx))
		return nil, err
	}
	if cfg.LeakThreshold > 0 {
		// The pools record who takes each connection from the start; the
		// watch starts once they are all open.
		s.leaks = &leakWatch{threshold: cfg.LeakThreshold, log: s.log}
	}
	pc := cfg.Primary
	pc.setDefaults(rolePrimary)
	if pc.ReadOnly {
		return fail(fmt.Errorf("poolset: pool %s: the primary cannot be read-only", pc.Name))
	}
	p, err := openPool(s, pc, rolePrimary, -1)
	if err != nil {
		return fail(err)
	}
	s.primary = p
	if err := p.ping(ctx); err != nil {
		return fail(err)
	}
	for i, rc := range cfg.Reads {
		rc.setDefaults(fmt.Sprintf("read-%d", i+1))
		if !rc.ReadOnly {
			return fail(fmt.Errorf("poolset: pool %s: a read pool must be read-only", rc.Name))
		}
		r, err := openPool(s, rc, roleRead, i)
		if err != nil {
			return fail(err)
		}
		s.reads = append(s.reads, r)
		if rc.Health != nil {
			r.startHealth(ctx)
			if !r.usable() {
				reason := "unknown"
				if r := r.health.reason.Load(); r != nil {
					reason = *r
				}
				s.log.Warn("poolset: read pool unusable at start; it joins the rotation once its health check passes", "pool", rc.Name, "reason", reason)
			}
		} else if err := r.ping(ctx); err != nil {
			s.log.Warn("poolset: read pool unreachable at start; its reads go to the primary until it answers", "pool", rc.Name, "err", Redact(err.Error()))
		}
	}
	if s.leaks != nil {
		s.leaks.start(s.pools())
	}
	return s, nil
}

func (s *Set) pools() []*Pool {
	return append([]*Pool{s.primary}, s.reads...)
}

// Primary returns the primary pool.
func (s *Set) Primary() *Pool { return s.primary }

// Reads returns the read pools, in configuration order.
func (s *Set) Reads() []*Pool { return s.reads }

// Handle returns repository name's handle on the set, creating it with the
// FallbackToPrimary read policy. Every call with the same name returns the
// same handle; it panics, as HandleWithPolicy does, when that handle was
// created with another policy.
func (s *Set) Handle(name string) *Handle {
	return s.HandleWithPolicy(name, FallbackToPrimary)
}

// HandleWithPolicy is Handle with an explicit read policy. The policy of a
// handle is fixed when it is first created: a later call with the same
// name and policy returns the same handle, and one with another policy
// panics rather than hand back a handle whose reads do not do what the
// caller asked (one repository, one policy). It also panics when name is
// empty (every connection must be attributed to a repository that says who
// it is). Both are mistakes in the code, not in its input.
func (s *Set) HandleWithPolicy(name string, policy ReadPolicy) *Handle {
	if name == "" {
		panic("poolset: Handle: empty repository name")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if h, ok := s.handles[name]; ok {
		if h.policy != policy {
			panic(fmt.Sprintf("poolset: Handle %q: asked with read policy %s, but it was created with %s", name, policy, h.policy))
		}
		return h
	}
	h := &Handle{set: s, name: name, primary: s.primary.repo(name), policy: policy,
		reads: make([]atomic.Pointer[repoStats], len(s.reads))}
	h.lbl = label{h: h, name: name}
	h.roLbl = label{h: h, name: name, readOnly: true}
	s.handles[name] = h
	return h
}

// route picks the pool for a read by h: the usable read pool with the
// fewest connections in use; in a set without read pools, the primary
// (unless h's policy is FailWithoutReadPool); else nil, for the Reader's
// fallback to decide.
func (s *Set) route(h *Handle) (*Pool, *repoStats) {
	best := -1
	for i, p := range s.reads {
		if !p.usable() {
			continue
		}
		if best < 0 || p.inUse.Load() < s.reads[best].inUse.Load() {
			best = i
		}
	}
	if best >= 0 {
		rs := h.readStats(best)
		rs.reads.Store(true)
		return s.reads[best], rs
	}
	if len(s.reads) > 0 || h.policy == FailWithoutReadPool {
		return nil, nil
	}
	h.primary.reads.Store(true)
	return s.primary, h.primary
}
