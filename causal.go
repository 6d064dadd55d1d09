package poolset

import (
	"context"
	"sync"
	"time"
)

// DefaultReadYourWritesWait bounds how long a read under ReadYourWrites
// waits for a read pool to catch up before it goes to the primary.
const DefaultReadYourWritesWait = 100 * time.Millisecond

type causalKey struct{}

// causal holds the replication position of the last write made under one
// ReadYourWrites context.
type causal struct {
	mu  sync.Mutex
	pos string
}

func (c *causal) set(pos string) {
	c.mu.Lock()
	c.pos = pos
	c.mu.Unlock()
}

func (c *causal) get() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pos
}

// ReadYourWrites returns a context under which reads see the writes made
// before them under the same context. A write (Handle.ExecContext, or a
// transaction's Commit begun with the context) records the primary's
// replication position; a read through a Reader then waits, up to
// Config.ReadYourWritesWait, for the chosen read pool to reach it, and goes
// to the primary if it does not, or if the pools cannot tell positions.
// Both outcomes are counted per repository. Reads before any write go to a
// read pool as usual. The context may be shared by goroutines; the last
// write's position wins. If ctx is already such a context it is returned.
func ReadYourWrites(ctx context.Context) context.Context {
	if causalFrom(ctx) != nil {
		return ctx
	}
	return context.WithValue(ctx, causalKey{}, &causal{})
}

func causalFrom(ctx context.Context) *causal {
	c, _ := ctx.Value(causalKey{}).(*causal)
	return c
}

// recordPosition stores the primary's position after a write on l, when
// ctx asks for read-your-writes.
func (l *lease) recordPosition(ctx context.Context, c *causal) {
	if c == nil || l.pool.cfg.Position == nil {
		return
	}
	pos, err := l.pool.cfg.Position(ctx, l.conn)
	if err != nil {
		l.pool.log.Warn("poolset: read the primary's position after a write", "pool", l.pool.cfg.Name, "err", err)
		c.set("unknown") // later reads go to the primary
		return
	}
	c.set(pos)
}

// caughtUp reports whether read lease l may serve a read under c: no
// write yet, or its server reached the last write's position within the
// wait.
func (l *lease) caughtUp(ctx context.Context, c *causal, wait time.Duration) bool {
	pos := c.get()
	if pos == "" {
		return true
	}
	if pos == "unknown" || l.pool.cfg.WaitPosition == nil {
		return false
	}
	ok, err := l.pool.cfg.WaitPosition(ctx, l.conn, pos, wait)
	return err == nil && ok
}
