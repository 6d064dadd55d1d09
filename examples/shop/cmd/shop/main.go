// Command shop is the shop reference service built on the poolset
// library: it opens each pool once, shares it among the shop's
// repositories, sends user reads to the read pool, and releases everything
// in order at the end. It owns all the wiring: flags and environment
// variables, which broker and database to open, signals, the admin server
// and the exit codes. What a message means and how it is settled is package
// worker's; the domain is package shop's; the brokers are packages
// natsqueue and rabbitqueue.
//
// Usage:
//
//	shop demo    [flags]   migrate, seed, run a mixed load, print the pools tree and the release report
//	shop migrate [flags]   bring the schema up to date
//	shop seed    [flags]   store users and products
//	shop worker  [flags]   process order messages until signalled
//	shop load    [flags]   publish orders to the broker
//	shop verify  [flags]   check every order is stored once and stock is conserved
//	shop bench sharing|reads [flags]   benchmarks (MariaDB/MySQL or PostgreSQL)
//
// demo and worker serve an admin server (--admin): /healthz, /readyz,
// /metrics and the live pools page at /pools (its JSON at /pools.json, see
// docs/POOLS_PAGE.md); demo's listens on a free loopback port by default
// and prints "pools page: URL" on stderr.
//
// Every subcommand that opens pools takes --mysql or --postgres, --replica, --redis,
// --data and --json (see README.md). Exit codes: 0 success, 1 runtime
// failure, 2 usage or configuration error, 3 a worker released everything
// but handed unfinished messages back at the drain deadline, 130 a third
// signal (exit at once).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
)

// Exit codes.
const (
	exitOK      = 0
	exitRuntime = 1
	exitUsage   = 2
)

// exitError ends a command with a code of its own.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

// usageError is a usage or configuration error: exit code 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

func main() {
	sig := watchSignals()
	code := run(sig.ctx, sig, os.Args[1:], os.Stdout, os.Stderr)
	sig.stop()
	os.Exit(code)
}

// exitNow is the exit code after a third signal: exit at once.
const exitNow = 130

// signals turns SIGINT and SIGTERM into the steps of a shutdown: the
// first cancels ctx (stop intake, drain, release), the second runs the
// hooks given to onSecond (skip the rest of the drain, still release), the
// third exits the process at once with code 130.
type signals struct {
	ctx    context.Context
	cancel context.CancelFunc
	ch     chan os.Signal
	quit   chan struct{}
	done   chan struct{}
	stderr io.Writer
	exit   func(code int) // os.Exit, but for tests

	mu     sync.Mutex
	hooks  []func()
	count  int
	second bool
}

// watchSignals watches SIGINT and SIGTERM until stop.
func watchSignals() *signals {
	s := newSignals(os.Stderr, os.Exit)
	signal.Notify(s.ch, os.Interrupt, syscall.SIGTERM)
	return s
}

// newSignals returns signals that take the steps of a shutdown for each
// signal sent on its ch, telling them on stderr and exiting with exit on
// the third, on a goroutine that stop ends.
func newSignals(stderr io.Writer, exit func(int)) *signals {
	ctx, cancel := context.WithCancel(context.Background())
	s := &signals{ctx: ctx, cancel: cancel, ch: make(chan os.Signal, 3), quit: make(chan struct{}), done: make(chan struct{}),
		stderr: stderr, exit: exit}
	go s.loop() // ends on stop
	return s
}

// loop takes the step of each signal until stop.
func (s *signals) loop() {
	defer close(s.done)
	for {
		select {
		case <-s.quit:
			return
		case sg := <-s.ch:
			s.mu.Lock()
			s.count++
			n := s.count
			var hooks []func()
			if n == 2 {
				s.second, hooks = true, s.hooks
			}
			s.mu.Unlock()
			switch n {
			case 1:
				fmt.Fprintf(s.stderr, "shop: %v: stopping intake and draining (again: skip the drain; a third time: exit now)\n", sg)
				s.cancel()
			case 2:
				fmt.Fprintf(s.stderr, "shop: %v again: skipping the rest of the drain, still releasing\n", sg)
				for _, h := range hooks {
					h()
				}
			default:
				fmt.Fprintf(s.stderr, "shop: %v a third time: exiting now\n", sg)
				s.exit(exitNow)
			}
		}
	}
}

// onSecond registers h to run on the second signal, or at once if it has
// come. It is safe on a nil *signals (no signals watched).
func (s *signals) onSecond(h func()) {
	if s == nil {
		return
	}
	s.mu.Lock()
	second := s.second
	if !second {
		s.hooks = append(s.hooks, h)
	}
	s.mu.Unlock()
	if second {
		h()
	}
}

// stop stops watching signals and waits for the watching goroutine.
func (s *signals) stop() {
	signal.Stop(s.ch)
	close(s.quit)
	<-s.done
	s.cancel()
}

// commands are the subcommands and what each does, for the usage texts.
var commands = []struct{ name, summary string }{
	{"demo", "migrate, seed, run a mixed load through the three repositories,\nprint the pools tree and the release report"},
	{"migrate", "bring the schema up to date"},
	{"seed", "store users and products"},
	{"worker", "process order and registration messages until signalled"},
	{"load", "publish orders (and registrations) to the broker"},
	{"verify", "check every order is stored once and stock is conserved"},
	{"bench sharing", "the mixed load on one shared primary pool vs one pool per repository"},
	{"bench reads", "user reads on the primary alone vs with replicas, and read-your-writes"},
}

// commandSummary returns what subcommand name does, or "".
func commandSummary(name string) string {
	for _, c := range commands {
		if c.name == name {
			return c.summary
		}
	}
	return ""
}

// usageText is shop's usage, for shop -h, --help and help.
var usageText = func() string {
	var b strings.Builder
	b.WriteString("usage: shop <command> [flags]\n\ncommands:\n")
	for _, c := range commands {
		for i, line := range strings.Split(c.summary, "\n") {
			name := ""
			if i == 0 {
				name = c.name
			}
			fmt.Fprintf(&b, "  %-14s  %s\n", name, line)
		}
	}
	b.WriteString("\nRun 'shop <command> -h' for its flags.\n")
	return b.String()
}()

// benchUsage is the usage of shop bench without a benchmark.
const benchUsage = "usage: shop bench sharing|reads [flags]\n\nRun 'shop bench sharing -h' or 'shop bench reads -h' for the flags.\n"

// isHelp reports whether arg asks for help.
func isHelp(arg string) bool {
	switch arg {
	case "-h", "-help", "--help", "help":
		return true
	}
	return false
}

// run runs the command in args and returns the exit code. Logs go to
// stderr; results to stdout.
func run(ctx context.Context, sig *signals, args []string, stdout, stderr io.Writer) int {
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if len(args) == 0 {
		fmt.Fprint(stderr, usageText)
		return exitUsage
	}
	var err error
	switch args[0] {
	case "demo":
		err = cmdDemo(ctx, args[1:], stdout, stderr, log)
	case "migrate":
		err = cmdMigrate(ctx, args[1:], stdout, stderr, log)
	case "seed":
		err = cmdSeed(ctx, args[1:], stdout, stderr, log)
	case "worker":
		err = cmdWorker(ctx, sig, args[1:], stdout, stderr, log)
	case "load":
		err = cmdLoad(ctx, args[1:], stdout, stderr, log)
	case "verify":
		err = cmdVerify(ctx, args[1:], stdout, stderr, log)
	case "bench":
		switch {
		case len(args) >= 2 && args[1] == "sharing":
			err = cmdBenchSharing(ctx, args[2:], stdout, stderr, log)
		case len(args) >= 2 && args[1] == "reads":
			err = cmdBenchReads(ctx, args[2:], stdout, stderr, log)
		case len(args) >= 2 && isHelp(args[1]):
			fmt.Fprint(stdout, benchUsage)
			return exitOK
		default:
			err = usagef("bench: unknown benchmark (want: shop bench sharing|reads)")
		}
	case "help":
		if len(args) > 1 { // shop help worker: shop worker -h
			return run(ctx, sig, append(args[1:len(args):len(args)], "-h"), stdout, stderr)
		}
		fmt.Fprint(stdout, usageText)
		return exitOK
	case "-h", "-help", "--help":
		fmt.Fprint(stdout, usageText)
		return exitOK
	default:
		err = usagef("unknown command %q", args[0])
	}
	if err == nil {
		return exitOK
	}
	if errors.Is(err, errHelp) {
		return exitOK
	}
	fmt.Fprintf(stderr, "shop: %v\n", err)
	var ue *usageError
	if errors.As(err, &ue) {
		return exitUsage
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return exitRuntime
}
