package poolset

import (
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"time"
)

// leakWatch logs leases held longer than a threshold. Pools record the
// acquiring stack when they have one. Its goroutine starts once the set's
// pools are open and ends when the set's release stops it.
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

// stop ends the watch's goroutine and waits for it.
func (w *leakWatch) stop() {
	close(w.quit)
	<-w.done
}

func (w *leakWatch) scan() {
	now := time.Now()
	for _, p := range w.pools {
		var old []*lease
		p.mu.Lock()
		for l := range p.held {
			if now.Sub(l.start) >= w.threshold && !l.reported.Load() {
				old = append(old, l)
			}
		}
		p.mu.Unlock()
		for _, l := range old {
			if !l.markLeaked() {
				continue
			}
			w.log.Warn("poolset: connection held past the leak threshold",
				"pool", p.cfg.Name, "repo", l.repo.name, "kind", l.kind.String(),
				"held", now.Sub(l.start).Round(time.Millisecond), "threshold", w.threshold,
				"stack", l.stackString())
		}
	}
}

// markLeaked counts l as a leak of its repository, once: it reports
// whether this call counted it.
func (l *lease) markLeaked() bool {
	if !l.reported.CompareAndSwap(false, true) {
		return false
	}
	l.repo.leaks.Add(1)
	return true
}

// callers records the stack of the code that takes a connection, skipping
// poolset's own frames.
func callers() []uintptr {
	pcs := make([]uintptr, 32)
	n := runtime.Callers(3, pcs)
	return pcs[:n]
}

// stackString formats the acquiring stack, one "function file:line" a line,
// leaving out poolset's own frames. It is empty when leak detection is off.
func (l *lease) stackString() string {
	if len(l.stack) == 0 {
		return ""
	}
	var b strings.Builder
	frames := runtime.CallersFrames(l.stack)
	for {
		f, more := frames.Next()
		if !strings.HasPrefix(f.Function, "github.com/poolset/poolset.") {
			fmt.Fprintf(&b, "%s %s:%d\n", f.Function, f.File, f.Line)
		}
		if !more {
			break
		}
	}
	return strings.TrimSuffix(b.String(), "\n")
}
