// Command mariadb-pair is a development tool, not part of the shop
// service: it starts a MariaDB primary and GTID replicas on free ports
// (the machine's mariadbd), prints their DSNs and pids, and stops them (by
// pid) on the first signal. It links poolsettest, the tests' server
// launcher, which the shop binary never does.
//
// Usage:
//
//	mariadb-pair [--dir ./poolset-pair] [--replicas 1] [--db poolset]
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
		fmt.Fprintf(os.Stderr, "mariadb-pair: %v\n", err)
		if err == flag.ErrHelp {
			os.Exit(0)
		}
		os.Exit(2)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("mariadb-pair", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "./poolset-pair", "directory for the servers' data (removed first)")
	replicas := fs.Int("replicas", 1, "number of replicas (0: a primary alone)")
	db := fs.String("db", "poolset", "database to create on the primary")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if *replicas < 0 {
		return fmt.Errorf("--replicas: must be 0 or more (0: a primary alone, to stop or pause by hand)")
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
	p, err := poolsettest.StartPair(sctx, abs, *db, *replicas)
	if err != nil {
		return fmt.Errorf("pair: %w", err)
	}
	defer p.Stop()
	fmt.Fprintf(stdout, "primary:   %s (pid %d)\n", p.Primary.DSN(*db), p.Primary.Pid())
	for _, r := range p.Replicas {
		fmt.Fprintf(stdout, "%s: %s (pid %d)\n", r.Name, r.DSN(*db), r.Pid())
	}
	if len(p.Replicas) > 0 {
		fmt.Fprintf(stdout, "\ntry: go run ./examples/shop/cmd/shop demo --mysql '%s' --replica '%s'\n", p.Primary.DSN(*db), p.Replicas[0].DSN(*db))
	}
	fmt.Fprintf(stdout, "Ctrl-C stops the servers.\n")
	<-ctx.Done()
	return p.Stop()
}
