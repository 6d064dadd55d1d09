package poolset

import (
	"context"
	"database/sql/driver"
	"errors"
	"sync"
	"time"
)

// DefaultReadYourWritesWait bounds how long a read under ReadYourWrites
// waits for a read pool to catch up before it goes to the primary.
const DefaultReadYourWritesWait = 100 * time.Millisecond

type causalKey struct{}

// positionUnknown is the position recorded when the primary's could not be
// read: later reads go to the primary.
const positionUnknown = "unknown"

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
// before them under the same context. A write (ExecContext on a Handle, or
// the Commit of a transaction begun with the context) records the
// primary's replication position; a read through a Reader then waits, up
// to Config.ReadYourWritesWait, for the chosen read pool to reach it, and
// goes to the primary if it does not, or if the pools cannot tell
// positions. Both outcomes are counted per repository. Reads before any
// write go to a read pool as usual, uncounted. The context may be shared
// by goroutines; the last write's position wins. If ctx is already such a
// context it is returned. To carry the position to another request or
// process, see Set.Token and Set.ReadYourWritesToken.
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

// positionFrom returns the position of the last write under ctx's
// ReadYourWrites, or "" when there is none.
func positionFrom(ctx context.Context) string {
	if c := causalFrom(ctx); c != nil {
		return c.get()
	}
	return ""
}

// noConnector is a driver.Connector that never connects.
type noConnector struct{}

var errNoConnector = errors.New("poolset: no connection")

func (noConnector) Connect(context.Context) (driver.Conn, error) { return nil, errNoConnector }
func (noConnector) Driver() driver.Driver                        { return noDriver{} }

type noDriver struct{}

func (noDriver) Open(string) (driver.Conn, error) { return nil, errNoConnector }
