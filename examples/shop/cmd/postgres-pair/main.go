// Command postgres-pair is a development tool, not part of the shop
// service: it starts a PostgreSQL primary and streaming standbys on free
// ports (the machine's PostgreSQL 15 binaries; as root, run as user
// postgres), prints their DSNs and pids, and stops them (by pid) on the
// first signal. It links poolsettest, the tests' server launcher, which the
// shop binary never does.
//
// Usage:
//
//	postgres-pair [--dir ./poolset-pg-pair] [--standbys 1] [--db poolset]
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/poolset/poolset/poolsettest"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "postgres-pair: %v\n", err)
		if err == flag.ErrHelp {
			os.Exit(0)
		}
		os.Exit(2)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("postgres-pair", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "./poolset-pg-pair", "directory for the servers' data (removed first)")
	standbys := fs.Int("standbys", 1, "number of standbys (0: a primary alone)")
	db := fs.String("db", "poolset", "database to create on the primary")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if *standbys < 0 {
		return fmt.Errorf("--standbys: must be 0 or more (0: a primary alone, to stop or pause by hand)")
	}
	abs, err := filepath.Abs(*dir)
	if err != nil {
		return fmt.Errorf("--dir: %w", err)
	}
	if err := os.RemoveAll(abs); err != nil {
		return fmt.Errorf("--dir: %w", err)
	}
	sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	p, err := poolsettest.StartPostgresPair(sctx, abs, *db, *standbys)
	if err != nil {
		return fmt.Errorf("pair: %w", err)
	}
	defer p.Stop()
	fmt.Fprintf(stdout, "primary:   %s (pid %d, log %s)\n", p.Primary.DSN(*db), p.Primary.Pid(), p.Primary.LogPath)
	for _, s := range p.Standbys {
		fmt.Fprintf(stdout, "%s: %s (pid %d, log %s)\n", s.Name, s.DSN(*db), s.Pid(), s.LogPath)
	}
	fmt.Fprintf(stdout, "Ctrl-C stops the servers.\n")
	<-ctx.Done()
	return p.Stop()
}
