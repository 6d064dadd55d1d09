package poolset

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

var (
	// ErrPoolClosed is returned by an operation on a pool once it is
	// closed (Set.Close, Pool.Close).
	ErrPoolClosed = errors.New("poolset: pool closed")
	// ErrAcquireTimeout is matched (errors.Is) by every *AcquireTimeoutError.
	ErrAcquireTimeout = errors.New("poolset: acquire timeout")
	// ErrNoReadPool is returned by a read whose repository's policy forbids
	// the primary when no read pool is usable.
	ErrNoReadPool = errors.New("poolset: no read pool usable")
	// ErrInterruptUnsupported is returned by Pool.Interrupt on a pool whose
	// config has no Interrupt.
	ErrInterruptUnsupported = errors.New("poolset: pool cannot interrupt statements")
)

// AcquireTimeoutError reports that a connection could not be had within a
// pool's acquire timeout, and who held the pool's connections then.
type AcquireTimeoutError struct {
	Pool    string
	Waited  time.Duration
	MaxOpen int
	InUse   int
	Waiting int
	// Holders maps each repository to the connections it held.
	Holders map[string]int
}

func (e *AcquireTimeoutError) Error() string {
	names := make([]string, 0, len(e.Holders))
	for n := range e.Holders {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool {
		if e.Holders[names[i]] != e.Holders[names[j]] {
			return e.Holders[names[i]] > e.Holders[names[j]]
		}
		return names[i] < names[j]
	})
	var by []string
	for _, n := range names {
		by = append(by, fmt.Sprintf("%s %d", n, e.Holders[n]))
	}
	held := "none attributed"
	if len(by) > 0 {
		held = strings.Join(by, ", ")
	}
	return fmt.Sprintf("poolset: acquire timeout on pool %s after %s: %d/%d connections in use (%s), %d waiting",
		e.Pool, e.Waited.Round(time.Millisecond), e.InUse, e.MaxOpen, held, e.Waiting)
}

// Is reports whether target is ErrAcquireTimeout.
func (e *AcquireTimeoutError) Is(target error) bool { return target == ErrAcquireTimeout }
