package poolset

import (
	"context"
	"database/sql/driver"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"strings"
	"sync"
)

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

// recordPosition stores the primary's replication position after a write
// made under read-your-writes. c.mu is held.
func (c *conn) recordPosition(ctx context.Context, cs *causal) {
	q := c.pool.positionQuery()
	if q == "" {
		return
	}
	pos, err := c.queryString(ctx, q)
	if err != nil {
		c.pool.log.Warn("poolset: read the primary's position after a write", "pool", c.pool.cfg.Name, "err", Redact(err.Error()))
		cs.set(positionUnknown) // later reads go to the primary
		return
	}
	cs.set(pos)
}

// queryString runs query, which returns one value, on the connection. c.mu
// is held.
func (c *conn) queryString(ctx context.Context, query string) (string, error) {
	q, ok := c.inner.(driver.QueryerContext)
	if !ok {
		return "", errors.New("the driver cannot run a query without preparing it")
	}
	rows, err := q.QueryContext(ctx, query, nil)
	if err != nil {
		return "", err
	}
	defer rows.Close()
	vals := make([]driver.Value, len(rows.Columns()))
	if err := rows.Next(vals); err != nil || len(vals) == 0 {
		return "", errors.New("no position returned")
	}
	switch v := vals[0].(type) {
	case string:
		return v, nil
	case []byte:
		return string(v), nil
	case nil:
		return "", nil
	}
	return "", errors.New("position is not text")
}

// Read-your-writes across requests and processes. Within one context the
// position of the last write travels in the context; to carry it to a later
// request (a cookie, a header) or another process, Token turns it into a
// string and ReadYourWritesToken turns the string back into a context.

// ErrBadToken is wrapped by ReadYourWritesToken's error for a token that is
// malformed, damaged, or made by a set on another primary.
var ErrBadToken = errors.New("poolset: bad read-your-writes token")

// tokenPrefix starts every token, and names its version.
const tokenPrefix = "rw1."

// Token returns an opaque token for the position of the last write made
// under ctx's ReadYourWrites (see ReadYourWrites), for a client to hand back
// with a later request: ReadYourWritesToken then makes that request's reads
// see the write. It is "" when no write was made under ctx. A token holds
// the primary's replication position and the primary it came from (its
// kind and address, without user or password), with a checksum; it is not
// secret and not signed: a client that forges one can only make its own
// reads wait or go to the primary.
func (s *Set) Token(ctx context.Context) string {
	pos := positionFrom(ctx)
	if pos == "" {
		return ""
	}
	body := s.tokenScope() + "\x00" + pos
	sum := crc32.ChecksumIEEE([]byte(body))
	b := binary.BigEndian.AppendUint32([]byte(body), sum)
	return tokenPrefix + base64.RawURLEncoding.EncodeToString(b)
}

// ReadYourWritesToken returns a ReadYourWrites context whose reads see the
// write token names, in this process or any other on the same primary: the
// first read waits on its read pool for that position, as after a write
// under the context itself. An empty token gives a plain ReadYourWrites
// context. A malformed or damaged token, or one made by a set on another
// primary, is an error wrapping ErrBadToken, never a wrong read.
func (s *Set) ReadYourWritesToken(ctx context.Context, token string) (context.Context, error) {
	if token == "" {
		return ReadYourWrites(ctx), nil
	}
	raw, ok := strings.CutPrefix(token, tokenPrefix)
	if !ok {
		return nil, fmt.Errorf("%w: not a poolset token", ErrBadToken)
	}
	b, err := base64.RawURLEncoding.DecodeString(raw)
	if err != nil || len(b) < 5 {
		return nil, fmt.Errorf("%w: malformed", ErrBadToken)
	}
	body, sum := b[:len(b)-4], binary.BigEndian.Uint32(b[len(b)-4:])
	if crc32.ChecksumIEEE(body) != sum {
		return nil, fmt.Errorf("%w: damaged (checksum)", ErrBadToken)
	}
	scope, pos, ok := strings.Cut(string(body), "\x00")
	if !ok || pos == "" {
		return nil, fmt.Errorf("%w: malformed", ErrBadToken)
	}
	if scope != s.tokenScope() {
		return nil, fmt.Errorf("%w: made for another primary (%s, not %s)", ErrBadToken, scope, s.tokenScope())
	}
	c := &causal{}
	c.set(pos)
	return context.WithValue(ctx, causalKey{}, c), nil
}

// tokenScope names the set's primary in its tokens: its kind and address,
// without the user.
func (s *Set) tokenScope() string {
	cfg := s.primary.cfg
	addr := cfg.Address
	if i := strings.LastIndex(addr, "@"); i >= 0 {
		addr = addr[i+1:]
	}
	return cfg.Kind + ":" + addr
}
