package poolset

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/poolset/poolset/release"
)

const (
	rolePrimary = "primary"
	roleRead    = "read"
)

// Config describes a Set: one primary pool, zero or more read pools, and
// the set-wide settings.
type Config struct {
	// Primary is the pool for writes, transactions and reads that must be
	// current. Required.
	Primary PoolConfig
	// Reads are pools for reads that may be stale (replicas, or SQLite's
	// read-only pool). Each must be ReadOnly. Default: none, so every read
	// goes to the primary.
	Reads []PoolConfig
	// LeakThreshold, when positive, logs every connection, transaction or
	// rows held longer than it, with the repository and the stack that took
	// it. Default: 0 (off). Taking the stack costs about a microsecond an
	// acquisition.
	LeakThreshold time.Duration
	// Logger receives warnings (leaks, read pools unreachable at start).
	// Default: slog.Default().
	Logger *slog.Logger
	// ReadYourWritesWait bounds how long a read under ReadYourWrites waits
	// for a read pool to reach the last write. Default: 100 ms.
	ReadYourWritesWait time.Duration
	// Release, when set, is the stack Open registers the pools' release
	// in, after whatever it holds already: a service that opens its broker
	// connection before its pools registers that first, and one Release
	// closes the pools and then the broker. Default: a stack of the set's
	// own.
	Release *release.Stack
}

// Set is the pools a service opens once and shares among all its
// repositories, with the one ordered release that closes them. It is safe
// for concurrent use. Open it once; hand each repository a Handle.
type Set struct {
	primary *Pool
	reads   []*Pool
	log     *slog.Logger
	leaks   *leakWatch
	rywWait time.Duration
	rel     *release.Stack

	mu      sync.Mutex
	handles map[string]*Handle
}

// Open opens the primary pool and checks that it answers, then the read
// pools, and registers the release of each as it is opened. A read pool
// that does not answer at start is logged and kept: its reads fall back to
// the primary until it answers. If Open fails, it releases what it had
// opened and returns an error naming the pool that failed.
func Open(ctx context.Context, cfg Config) (*Set, error) {
	s := &Set{log: cfg.Logger, handles: make(map[string]*Handle), rel: cfg.Release}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.rel == nil {
		s.rel = new(release.Stack)
	}
	s.rywWait = cfg.ReadYourWritesWait
	if s.rywWait <= 0 {
		s.rywWait = DefaultReadYourWritesWait
	}
	// What Open opens is kept in opened until Open succeeds, so that a
	// failure releases exactly that, and nothing the caller's stack held.
	type step struct {
		name    string
		timeout time.Duration
		fn      release.Func
	}
	var opened []step
	register := func(name string, timeout time.Duration, fn release.Func) {
		opened = append(opened, step{name, timeout, fn})
	}
	fail := func(err error) (*Set, error) {
		var own release.Stack
		for _, st := range opened {
			own.AddTimeout(st.name, st.timeout, st.fn)
		}
		own.Release(context.WithoutCancel(ctx))
		return nil, err
	}
	if cfg.LeakThreshold > 0 {
		s.leaks = &leakWatch{threshold: cfg.LeakThreshold, log: s.log}
	}
	pc := cfg.Primary
	pc.setDefaults(rolePrimary)
	if pc.ReadOnly {
		return fail(fmt.Errorf("poolset: pool %s: the primary cannot be read-only", pc.Name))
	}
	p, err := openPool(ctx, s, pc, rolePrimary, -1, s.log, s.leaks)
	if err != nil {
		return fail(err)
	}
	register("pool "+pc.Name, pc.CloseWait+3*time.Second, p.Close)
	s.primary = p
	if err := p.ping(ctx); err != nil {
		return fail(err)
	}
	for i, rc := range cfg.Reads {
		rc.setDefaults(fmt.Sprintf("read-%d", i+1))
		if !rc.ReadOnly {
			return fail(fmt.Errorf("poolset: pool %s: a read pool must be read-only", rc.Name))
		}
		r, err := openPool(ctx, s, rc, roleRead, i, s.log, s.leaks)
		if err != nil {
			return fail(err)
		}
		register("pool "+rc.Name, rc.CloseWait+3*time.Second, r.Close)
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
			s.log.Warn("poolset: read pool unreachable at start; its reads go to the primary until it answers", "pool", rc.Name, "err", err)
		}
	}
	if s.leaks != nil {
		s.leaks.start(s.pools())
		opened = append(opened, step{"leak watch", 0, func(context.Context) error { s.leaks.stop(); return nil }})
	}
	for _, st := range opened {
		s.rel.AddTimeout(st.name, st.timeout, st.fn)
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
// same handle.
func (s *Set) Handle(name string) *Handle {
	return s.HandleWithPolicy(name, FallbackToPrimary)
}

// HandleWithPolicy is Handle with an explicit read policy. The policy of a
// handle is fixed when it is first created. It panics when name is empty
// (every connection must be attributed to a repository that says who it
// is), or when a handle of that name exists with another policy (one
// repository, one policy): both are mistakes in the code, not in its input.
func (s *Set) HandleWithPolicy(name string, policy ReadPolicy) *Handle {
	if name == "" {
		panic("poolset: Handle: empty repository name")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if h, ok := s.handles[name]; ok {
		if h.policy != policy {
			panic(fmt.Sprintf("poolset: Handle %q: asked with read policy %d, but it was created with %d", name, policy, h.policy))
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

// Register adds a release step for a resource that is not an SQL pool (a
// cache client, a broker connection), to run before the pools opened
// earlier are closed. Register it the moment the resource is acquired.
// timeout <= 0 means release.DefaultTimeout.
func (s *Set) Register(name string, timeout time.Duration, fn release.Func) {
	s.rel.AddTimeout(name, timeout, fn)
}

// Release closes everything the set opened and every registered resource
// (and whatever Config.Release held before), last opened first, each within its own timeout and all within ctx. A step
// that fails or times out does not stop the later ones. It is idempotent
// and safe to call from several goroutines: all get the first result.
func (s *Set) Release(ctx context.Context) (*release.Report, error) {
	return s.rel.Release(ctx)
}
