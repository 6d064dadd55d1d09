package poolset

import (
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"time"
)

// leakWatch logs connections held, and prepared statements open, longer than
// a threshold, with the repository and the stack that took them. Its
// goroutine starts once the set's pools are open and ends when the set's
// Close stops it.
type leakWatch struct {
	threshold time.Duration
	log       *slog.Logger
	pools     []*Pool
	quit      chan struct{}
	done      chan struct{}
}

// start starts the goroutine that scans pools.
func (w *leakWatch) start(pools []*Pool) {
	w.pools, w.quit, w.done = pools, make(chan struct{}), make(chan struct{})
	every := min(max(w.threshold/2, 10*time.Millisecond), time.Second)
	go func() {
		defer close(w.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-w.quit:
				return
			case <-t.C:
				w.scan()
			}
		}
	}()
}

// stop ends the watch's goroutine and waits for it. It is a no-op for a
// watch that was not started (Open failed before it could start it).
func (w *leakWatch) stop() {
	if w.quit == nil {
		return
	}
	close(w.quit)
	<-w.done
}

func (w *leakWatch) scan() {
	now := time.Now()
	for _, p := range w.pools {
		for _, h := range p.heldNow() {
			if now.Sub(h.since) < w.threshold || !h.reported.CompareAndSwap(false, true) {
				continue
			}
			h.repo.leaks.Add(1)
			w.log.Warn("poolset: held past the leak threshold",
				"pool", p.cfg.Name, "repo", h.repo.name, "kind", h.kind.String(),
				"held", now.Sub(h.since).Round(time.Millisecond), "threshold", w.threshold,
				"stack", stackString(h.stack))
		}
	}
}

// callers records the stack of the code that takes a connection.
func callers() []uintptr {
	pcs := make([]uintptr, 48)
	n := runtime.Callers(3, pcs)
	return pcs[:n]
}

// stackString formats an acquiring stack, one "function file:line" a line,
// leaving out poolset's and database/sql's own frames, so that the first
// line is the caller's. It is empty when leak detection is off.
func stackString(stack []uintptr) string {
	if len(stack) == 0 {
		return ""
	}
	var b strings.Builder
	frames := runtime.CallersFrames(stack)
	for {
		f, more := frames.Next()
		if !strings.HasPrefix(f.Function, "github.com/poolset/poolset.") && !strings.HasPrefix(f.Function, "database/sql.") {
			fmt.Fprintf(&b, "%s %s:%d\n", f.Function, f.File, f.Line)
		}
		if !more {
			break
		}
	}
	return strings.TrimSuffix(b.String(), "\n")
}
