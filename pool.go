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
	"sync"
	"sync/atomic"
	"time"
)

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
	create  histogram // how long the driver took to open each connection

	mu    sync.Mutex
	repos map[string]*repoStats
	order []string
	conns map[*conn]struct{}
	stmts map[*stmt]struct{}

	health *health // nil for the primary, and for a read pool without cfg.Health

	closeOnce sync.Once
	closeErr  error
}

// openPool makes pool cfg of set s; its connections open as statements
// need them. index is the read pool's place in the set's Reads, or -1.
func openPool(s *Set, cfg PoolConfig, role string, index int) (*Pool, error) {
	if cfg.Connector == nil {
		return nil, fmt.Errorf("poolset: pool %s: no connector", cfg.Name)
	}
	lend := cfg.MaxOpen
	if role == roleRead && cfg.Health != nil && lend > 1 {
		lend-- // the health check's connection is one of MaxOpen
	}
	p := &Pool{
		set:   s,
		cfg:   cfg,
		role:  role,
		index: index,
		lend:  lend,
		log:   s.log,
		leaks: s.leaks,
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
// Unattributed. Do not close it: the set's Close closes it.
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

// positionQuery returns the query that reads the replication position of
// a connection's last commit, or "" when p is not the primary or cannot
// tell positions.
func (p *Pool) positionQuery() string {
	if p.role != rolePrimary || p.cfg.Positions == nil {
		return ""
	}
	return p.cfg.Positions.PositionQuery()
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
	waitHist      histogram // every acquire's wait, and every timed-out one
	holdHist      histogram
	longest       atomic.Int64
	timeouts      atomic.Int64
	leaks         atomic.Int64
	fallbacks     atomic.Int64
	fallbackFails atomic.Int64
	causalReplica atomic.Int64 // read-your-writes reads a read pool served
	causalPrimary atomic.Int64 // read-your-writes reads sent to the primary
}
