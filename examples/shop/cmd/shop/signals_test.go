package main

import (
	"bytes"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// syncBuffer is a bytes.Buffer safe for the signal goroutine's writes and
// the test's reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestSignals: the first signal cancels the command's ctx and nothing
// else; the second runs the onSecond hooks (the worker's SkipDrain), once,
// and a hook registered after it runs at once; the third exits with 130.
// The worker's side of the second signal is TestSecondSignalSkipsDrain in
// package worker; the exit itself only a process shows.
func TestSignals(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	var stderr syncBuffer
	exited := make(chan int, 3)
	s := newSignals(&stderr, func(code int) { exited <- code })
	defer s.stop()
	var mu sync.Mutex
	ran := map[string]int{}
	hook := func(name string) func() {
		return func() {
			mu.Lock()
			defer mu.Unlock()
			ran[name]++
		}
	}
	hooksRun := func() map[string]int {
		mu.Lock()
		defer mu.Unlock()
		return map[string]int{"early": ran["early"], "late": ran["late"]}
	}
	s.onSecond(hook("early"))

	s.ch <- syscall.SIGTERM
	select {
	case <-s.ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("first signal: ctx not cancelled")
	}
	if got := hooksRun(); got["early"] != 0 {
		t.Errorf("first signal: hooks run %v; want none", got)
	}

	second := make(chan struct{})
	s.onSecond(func() { close(second) })
	s.ch <- os.Interrupt
	select {
	case <-second:
	case <-time.After(10 * time.Second):
		t.Fatal("second signal: hooks not run")
	}
	s.onSecond(hook("late")) // after the second signal: at once
	if got, want := hooksRun(), map[string]int{"early": 1, "late": 1}; got["early"] != want["early"] || got["late"] != want["late"] {
		t.Errorf("second signal: hooks run %v; want %v", got, want)
	}
	select {
	case code := <-exited:
		t.Fatalf("exit(%d) before the third signal", code)
	default:
	}

	s.ch <- syscall.SIGTERM
	select {
	case code := <-exited:
		if code != exitNow {
			t.Errorf("third signal: exit(%d); want exit(%d)", code, exitNow)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("third signal: no exit")
	}
	if got := hooksRun(); got["early"] != 1 || got["late"] != 1 {
		t.Errorf("after the third signal: hooks run %v; want each once", got)
	}
	for _, want := range []string{"stopping intake and draining", "skipping the rest of the drain", "exiting now"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr %q: want it to say %q", stderr.String(), want)
		}
	}
}
