package poolset

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults applied by Open to a PoolConfig field left at its zero value.
const (
	// DefaultMaxOpen is the most connections a pool opens, as in knex's
	// default and the seed service.
	DefaultMaxOpen = 10
	// DefaultMaxLifetime is how long a connection is reused. It stays under
	// the five minutes go-sql-driver/mysql advises, so that no server or
	// middlebox closes a connection the pool still trusts.
	DefaultMaxLifetime = 3 * time.Minute
	// DefaultMaxIdleTime is how long a connection may sit idle before it is
	// closed.
	DefaultMaxIdleTime = time.Minute
	// DefaultAcquireTimeout bounds the wait for a connection. database/sql
	// has no such bound (only the caller's ctx); poolset adds one so that a
	// leak shows up as a clear error, not a hang.
	DefaultAcquireTimeout = 5 * time.Second
	// DefaultCloseWait is how long Close waits for borrowed connections to
	// come back before it closes them itself.
	DefaultCloseWait = 2 * time.Second
)

// PoolConfig describes one SQL pool. Packages mysql and sqlite build one from
// a DSN; fields may be edited before Open.
type PoolConfig struct {
	// Name identifies the pool in stats, errors, the tree and the release
	// report. Default: "primary" for the primary, "read-N" for read pools.
	Name string
	// Kind names the backend for display: "mysql", "sqlite".
	Kind string
	// Address is how the pool is shown: its DSN with any password replaced
	// by ***. It is never used to connect.
	Address string
	// Connector opens the pool's connections. Required.
	Connector driver.Connector
	// ReadOnly says the connector opens read-only sessions, so that a write
	// sent to this pool fails. Read pools must be ReadOnly.
	ReadOnly bool
	// MaxOpen is the most connections open at once. Default: 10. Ping
	// alone opens one beyond it, for as long as it takes to answer.
	MaxOpen int
	// MaxIdle is the most idle connections kept. Default: MaxOpen, so that a
	// busy pool does not close and reopen connections.
	MaxIdle int
	// MaxLifetime is how long a connection is reused. Default: 3 min;
	// negative: forever.
	MaxLifetime time.Duration
	// MaxIdleTime is how long a connection may stay idle. Default: 1 min;
	// negative: forever.
	MaxIdleTime time.Duration
	// AcquireTimeout bounds the wait for a connection, within the caller's
	// ctx. Default: 5 s; negative: only the caller's ctx.
	AcquireTimeout time.Duration
	// IsConnError, when set, tells a broken-connection error of this
	// backend's driver from a statement error, so that a read whose read
	// pool's server went away can be retried on the primary. Errors that
	// wrap driver.ErrBadConn, net.Error or io.ErrUnexpectedEOF count as
	// broken connections in any case.
	IsConnError func(error) bool
	// Health, when set on a read pool, is run on a connection of its own
	// (one of the pool's MaxOpen: the pool lends MaxOpen-1) every
	// HealthInterval and once at Open, so that a hung server is noticed
	// even while every lent connection is stuck; while it returns an error
	// the pool is out of the rotation and its reads go to another read pool
	// or the primary. A check that has not returned after two intervals
	// takes the pool out at once and counts as failed; its ctx ends after 5
	// s (or four intervals, if longer), or two intervals into Close. Open
	// waits at most two intervals for the first check. mysql.ReplicaCheck
	// checks a replica's threads and lag. Default: none (always in the
	// rotation while open).
	Health func(ctx context.Context, conn *sql.Conn) error
	// Lag, when set on a read pool, reports the replication lag that its
	// Health check last measured, and whether it is known; Stats, the tree
	// and the metrics show it. mysql.PoolConfig sets it with Health.
	// Default: none.
	Lag func() (time.Duration, bool)
	// HealthInterval is how often Health runs. Default: 250 ms, so that a
	// failing replica leaves the rotation within about a second.
	HealthInterval time.Duration
	// PositionQuery, on the primary, is a query returning, as text, the
	// replication position that the connection's last commit reached
	// (MariaDB: SELECT @@last_gtid), so that reads under ReadYourWrites can
	// wait for it. Default: none (ReadYourWrites reads then go to the
	// primary).
	PositionQuery string
	// WaitPosition, on a read pool, waits up to timeout for the server to
	// have applied pos and reports whether it did (MariaDB:
	// MASTER_GTID_WAIT). Default: none (such reads go to the primary).
	WaitPosition func(ctx context.Context, conn *sql.Conn, pos string, timeout time.Duration) (bool, error)
	// CloseWait is how long Close waits for borrowed connections before it
	// reports them and closes them itself. Default: 2 s.
	CloseWait time.Duration
	// Interrupt, when set, ends the statements running now on the pool's
	// connections without closing the connections, and returns how many it
	// ended (MySQL: KILL QUERY from a connection of its own). A shutdown
	// that cannot wait for its statements uses it instead of cancelling
	// their contexts, which makes most drivers cut the connection (the
	// server then counts an aborted client). Default: none (Pool.Interrupt
	// returns ErrInterruptUnsupported).
	Interrupt func(ctx context.Context) (int, error)
}

func (c *PoolConfig) setDefaults(name string) {
	if c.Name == "" {
		c.Name = name
	}
	if c.MaxOpen <= 0 {
		c.MaxOpen = DefaultMaxOpen
	}
	if c.MaxIdle <= 0 {
		c.MaxIdle = c.MaxOpen
	}
	if c.MaxLifetime == 0 {
		c.MaxLifetime = DefaultMaxLifetime
	}
	if c.MaxIdleTime == 0 {
		c.MaxIdleTime = DefaultMaxIdleTime
	}
	if c.AcquireTimeout == 0 {
		c.AcquireTimeout = DefaultAcquireTimeout
	}
	if c.CloseWait <= 0 {
		c.CloseWait = DefaultCloseWait
	}
}

// Pool is one SQL connection pool shared by every repository that uses it.
// It wraps a *sql.DB and counts, per repository, who holds connections and
// who waits for them. It is safe for concurrent use.
type Pool struct {
	set    *Set // the set the pool belongs to
	cfg    PoolConfig
	role   string // "primary" or "read"
	index  int    // the read pool's place in the set's Reads; -1 for the primary
	lend   int    // connections lent to statements: MaxOpen, less the health check's
	db     *sql.DB
	log    *slog.Logger
	leaks  *leakWatch
	closed atomic.Bool

	inUse   atomic.Int64
	waiting atomic.Int64

	mu    sync.Mutex
	repos map[string]*repoStats
	order []string
	conns map[*conn]struct{}
	stmts map[*stmt]struct{}

	health *health // nil without cfg.Health

	closeOnce sync.Once
	closeErr  error
}

func openPool(ctx context.Context, s *Set, cfg PoolConfig, role string, index int, log *slog.Logger, leaks *leakWatch) (*Pool, error) {
	if cfg.Connector == nil {
		return nil, fmt.Errorf("poolset: pool %s: no connector", cfg.Name)
	}
	lend := cfg.MaxOpen
	if cfg.Health != nil && lend > 1 {
		lend-- // the health check's connection is one of MaxOpen
	}
	p := &Pool{
		set:   s,
		cfg:   cfg,
		role:  role,
		index: index,
		lend:  lend,
		log:   log,
		leaks: leaks,
		repos: make(map[string]*repoStats),
		conns: make(map[*conn]struct{}),
		stmts: make(map[*stmt]struct{}),
	}
	db := sql.OpenDB(&connector{Connector: cfg.Connector, pool: p})
	db.SetMaxOpenConns(lend)
	db.SetMaxIdleConns(min(cfg.MaxIdle, lend))
	db.SetConnMaxLifetime(max(cfg.MaxLifetime, 0))
	db.SetConnMaxIdleTime(max(cfg.MaxIdleTime, 0))
	p.db = db
	return p, nil
}

// pingTimeout bounds a ping: the pool's AcquireTimeout, or the default
// when that is negative (acquires wait only on the caller's ctx).
func (p *Pool) pingTimeout() time.Duration {
	if t := p.cfg.AcquireTimeout; t > 0 {
		return t
	}
	return DefaultAcquireTimeout
}

// ping checks that the pool can reach its server, on one of its
// connections, within the pool's AcquireTimeout.
func (p *Pool) ping(ctx context.Context) error {
	if err := p.closedErr(); err != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(ctx, p.pingTimeout())
	defer cancel()
	if err := p.db.PingContext(pctx); err != nil {
		return p.pingError(ctx, pctx, err)
	}
	return nil
}

// pingError names the pool in err, and says that the server did not answer
// in time when the ping's own timeout (pctx's, not the caller's) ended it.
func (p *Pool) pingError(ctx, pctx context.Context, err error) error {
	if pctx.Err() != nil && ctx.Err() == nil {
		return fmt.Errorf("poolset: pool %s (%s %s): the server did not answer within %s: %w",
			p.cfg.Name, p.cfg.Kind, p.cfg.Address, p.pingTimeout(), err)
	}
	return fmt.Errorf("poolset: pool %s (%s %s): %w", p.cfg.Name, p.cfg.Kind, p.cfg.Address, err)
}

// Ping checks that the pool's server answers, on a new connection of its
// own outside the pool, closed cleanly before Ping returns: a pool whose
// connections are all in use, or stuck, does not make a live server look
// down. It blocks until the server answers, the pool's AcquireTimeout
// passes, or ctx is done. After Close it returns ErrPoolClosed and opens
// nothing. It is safe for concurrent use.
func (p *Pool) Ping(ctx context.Context) error {
	if err := p.closedErr(); err != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(ctx, p.pingTimeout())
	defer cancel()
	err := func() error {
		c, err := p.cfg.Connector.Connect(pctx)
		if err != nil {
			return err
		}
		defer c.Close()
		if pc, ok := c.(driver.Pinger); ok {
			return pc.Ping(pctx)
		}
		return nil
	}()
	if err != nil {
		return p.pingError(ctx, pctx, err)
	}
	return nil
}

// Interrupt ends the statements running now on the pool's connections,
// whichever repository runs them, without closing the connections: each
// fails with the server's "interrupted" error, its transaction can be
// rolled back, and its connection goes back to the pool intact. It returns
// how many statements it ended, and ErrInterruptUnsupported when the pool's
// config has no Interrupt (then only cancelling the statements' contexts
// ends them). It blocks until the server has taken the requests or ctx is
// done, and is safe for concurrent use.
func (p *Pool) Interrupt(ctx context.Context) (int, error) {
	if p.cfg.Interrupt == nil {
		return 0, ErrInterruptUnsupported
	}
	if err := p.closedErr(); err != nil {
		return 0, err
	}
	n, err := p.cfg.Interrupt(ctx)
	if err != nil {
		return n, fmt.Errorf("poolset: interrupt statements on pool %s (%s %s): %w", p.cfg.Name, p.cfg.Kind, p.cfg.Address, err)
	}
	return n, nil
}

// closedErr returns ErrPoolClosed, naming the pool, once Close has begun.
func (p *Pool) closedErr() error {
	if p.closed.Load() {
		return fmt.Errorf("poolset: pool %s: %w", p.cfg.Name, ErrPoolClosed)
	}
	return nil
}

// Name returns the pool's name, such as "primary".
func (p *Pool) Name() string { return p.cfg.Name }

// Config returns the pool's configuration with defaults applied.
func (p *Pool) Config() PoolConfig { return p.cfg }

// DB returns the pool's *sql.DB, for code and libraries that take one
// (sqlx.NewDb, bun.NewDB, ent, migrations). Statements through it count
// against the repository its context names with WithRepo, or against
// Unattributed. Do not close it: the set closes it at release.
func (p *Pool) DB() *sql.DB { return p.db }

// repo returns the counters of repository name on this pool, creating them.
func (p *Pool) repo(name string) *repoStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	rs, ok := p.repos[name]
	if !ok {
		rs = &repoStats{name: name}
		p.repos[name] = rs
		p.order = append(p.order, name)
	}
	return rs
}

// statsFor returns the counters of the repository lb names on p.
func (p *Pool) statsFor(lb *label) *repoStats {
	if h := lb.h; h != nil {
		if p.role == rolePrimary {
			return h.primary
		}
		return h.readStats(p.index)
	}
	return p.repo(lb.name)
}

// track and untrack keep the pool's open connections, for the leak watch,
// the acquire timeout's list of holders, and Close.
func (p *Pool) track(c *conn) {
	p.mu.Lock()
	p.conns[c] = struct{}{}
	p.mu.Unlock()
}

func (p *Pool) untrack(c *conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

// openConns returns how many of the pool's connections are open on the
// server: database/sql's count, less those Close closed under a holder.
func (p *Pool) openConns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

func (p *Pool) connList() []*conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	cs := make([]*conn, 0, len(p.conns))
	for c := range p.conns {
		cs = append(cs, c)
	}
	return cs
}

// trackStmt and untrackStmt keep the pool's open prepared statements.
func (p *Pool) trackStmt(s *stmt) {
	p.mu.Lock()
	p.stmts[s] = struct{}{}
	p.mu.Unlock()
}

func (p *Pool) untrackStmt(s *stmt) {
	p.mu.Lock()
	delete(p.stmts, s)
	p.mu.Unlock()
}

// held returns what is held now: each connection checked out, and each
// prepared statement open, oldest first.
func (p *Pool) heldNow() []held {
	var out []held
	for _, c := range p.connList() {
		if rs := c.holder.Load(); rs != nil {
			c.smu.Lock()
			st := c.stack
			c.smu.Unlock()
			out = append(out, held{repo: rs, kind: leaseKind(c.kind.Load()), since: time.Unix(0, c.since.Load()),
				stack: st, reported: &c.reported, conn: c})
		}
	}
	p.mu.Lock()
	for s := range p.stmts {
		out = append(out, held{repo: s.repo, kind: kindStmt, since: s.since, stack: s.stack, reported: &s.reported})
	}
	p.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].since.Before(out[j].since) })
	return out
}

// held is a connection checked out, or a prepared statement open, as the
// leak watch and Close report it.
type held struct {
	repo     *repoStats
	kind     leaseKind
	since    time.Time
	stack    []uintptr
	reported *atomic.Bool
	conn     *conn // nil for a statement
}

// Close stops new statements, waits up to CloseWait (or until ctx is done)
// for borrowed connections to come back, logs and closes any still held
// (with the repository and stack that took them: a *sql.Rows, *sql.Tx or
// *sql.Conn left open, whose driver connection is closed under it with a
// goodbye to the server) and lists prepared statements still open, then
// closes the *sql.DB, which says goodbye to the server on every idle
// connection and closes the statements. A read pool's health check under
// way gets up to two HealthIntervals first (less if ctx ends). Close
// blocks for at most that, CloseWait and the time the server takes to
// close. It is idempotent: later calls return the first result. The set
// calls Close at release.
func (p *Pool) Close(ctx context.Context) error {
	p.closeOnce.Do(func() {
		p.mu.Lock()
		p.closed.Store(true)
		p.mu.Unlock()
		p.stopHealth(ctx)
		wctx, cancel := context.WithTimeout(ctx, p.cfg.CloseWait)
		defer cancel()
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for p.inUse.Load() > 0 {
			select {
			case <-wctx.Done():
			case <-tick.C:
				continue
			}
			break
		}
		var errs []error
		if leftover := p.heldNow(); len(leftover) > 0 {
			var names []string
			for _, h := range leftover {
				if h.reported.CompareAndSwap(false, true) { // unless the leak watch counted it
					h.repo.leaks.Add(1)
				}
				p.log.Warn("poolset: still held at release; closing it",
					"pool", p.cfg.Name, "repo", h.repo.name, "kind", h.kind.String(),
					"held", time.Since(h.since).Round(time.Millisecond), "stack", stackString(h.stack))
				names = append(names, h.repo.name+" "+h.kind.String())
				if h.conn != nil && !h.conn.forceClose() {
					errs = append(errs, fmt.Errorf("poolset: pool %s: a %s of %s still running a call: left to close with the pool", p.cfg.Name, h.kind, h.repo.name))
				}
			}
			errs = append(errs, fmt.Errorf("poolset: pool %s: %d still held at release (%s), closed", p.cfg.Name, len(leftover), strings.Join(names, ", ")))
		}
		if err := p.db.Close(); err != nil {
			errs = append(errs, fmt.Errorf("poolset: close pool %s: %w", p.cfg.Name, err))
		}
		p.closeErr = errors.Join(errs...)
	})
	return p.closeErr
}

// isConnError reports whether err, met on one of p's connections while ctx
// was live, means the connection or its server is gone.
func (p *Pool) isConnError(ctx context.Context, err error) bool {
	if ctx.Err() != nil || err == nil {
		return false
	}
	var ne net.Error
	if errors.Is(err, driver.ErrBadConn) || errors.Is(err, io.ErrUnexpectedEOF) || errors.As(err, &ne) {
		return true
	}
	return p.cfg.IsConnError != nil && p.cfg.IsConnError(err)
}

// leaseKind says what holds a connection, for the leak reports.
type leaseKind uint8

const (
	kindExec leaseKind = iota
	kindRows
	kindTx
	kindStmt
	kindConn
)

func (k leaseKind) String() string {
	switch k {
	case kindRows:
		return "rows"
	case kindTx:
		return "tx"
	case kindStmt:
		return "stmt"
	case kindConn:
		return "conn"
	}
	return "exec"
}

// repoStats are one repository's counters on one pool.
type repoStats struct {
	name          string
	reads         atomic.Bool
	writes        atomic.Bool
	inUse         atomic.Int64
	waiting       atomic.Int64
	acquires      atomic.Int64
	queries       atomic.Int64
	txs           atomic.Int64
	waitNanos     atomic.Int64
	holdNanos     atomic.Int64
	longest       atomic.Int64
	timeouts      atomic.Int64
	leaks         atomic.Int64
	fallbacks     atomic.Int64
	fallbackFails atomic.Int64
	causalReplica atomic.Int64 // read-your-writes reads a read pool served
	causalPrimary atomic.Int64 // read-your-writes reads sent to the primary
}
