package poolset

import "context"

// Attribution without owning what the caller holds. Every pool's *sql.DB
// opens its connections through a connector that wraps the driver's, so
// each connection sees the context of every statement run on it, and sees
// database/sql hand it back: database/sql calls driver.Validator.IsValid
// whenever a connection returns to the pool, and Close when it drops one.
// A connection is checked out to the repository named by the context of
// its first statement (a Handle's label, WithRepo's, or Unattributed), and
// checked in at IsValid or Close. So the *sql.Rows, *sql.Tx, *sql.Stmt and
// *sql.Conn that users hold are database/sql's own, closed the usual way,
// and every path through the pool (a Handle, the *sql.DB, sqlx or GORM on
// either) is counted.

// Unattributed is the repository under which statements are counted whose
// context names none: use of a pool's *sql.DB (Pool.DB) without WithRepo.
const Unattributed = "(unattributed)"

type labelKey struct{}

// label names the repository a statement runs for.
type label struct {
	h        *Handle // the Handle's own label; nil for WithRepo's
	name     string
	readOnly bool  // a Reader's query on the primary: run it in a read-only transaction
	call     *call // the wait of a call made while the pool was full, timed and bounded
	start    int64 // unix nanos a Handle's call began, when call is nil; 0 for WithRepo's
	internal bool  // poolset's own statements for the call (WaitPosition's polls): not counted as queries
}

// labelCtx is the context of a Handle's call made while its pool had room:
// ctx carrying a copy of the Handle's label that knows when the call began,
// so that the connection's checkout can time how long the call took to get
// it. One allocation, as context.WithValue's would be.
type labelCtx struct {
	context.Context
	lb label
}

func (c *labelCtx) Value(key any) any {
	if _, ok := key.(labelKey); ok {
		return &c.lb
	}
	return c.Context.Value(key)
}

// WithRepo returns a context under which statements on the set's pools, run
// through a pool's *sql.DB (Pool.DB) or anything built on it (sqlx.NewDb,
// bun.NewDB, ent), count against repository name, as a Handle's do:
// db.QueryContext(poolset.WithRepo(ctx, "users"), ...). A statement run
// without it counts against Unattributed. Only the wait for a connection
// under a Handle is bounded by the pool's AcquireTimeout; through the
// *sql.DB it is database/sql's, bounded by ctx. It panics if name is empty.
func WithRepo(ctx context.Context, name string) context.Context {
	if name == "" {
		panic("poolset: WithRepo: empty repository name")
	}
	return context.WithValue(ctx, labelKey{}, &label{name: name})
}

func labelOf(ctx context.Context) *label {
	l, _ := ctx.Value(labelKey{}).(*label)
	return l
}

// markUse records that the repository rs read or wrote, for a statement
// not run through a Handle (whose methods record it themselves): one under
// WithRepo or Unattributed, through a pool's *sql.DB. Without it such a
// repository would be counted but left out of Stats and Tree.
func markUse(lb *label, rs *repoStats, write bool) {
	if lb != nil && lb.h != nil {
		return
	}
	if write {
		markWrites(rs)
	} else {
		markReads(rs)
	}
}
