package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/poolset/poolset/poolsettest"
)

// cmdPair starts a MariaDB primary and GTID replicas for trying the
// replica features by hand, prints their DSNs, and stops them (by pid) on
// the first signal.
func cmdPair(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newCommandFlags("pair", stdout)
	dir := fs.String("dir", "./poolset-pair", "directory for the servers' data (removed first)")
	replicas := fs.Int("replicas", 1, "number of replicas (0: a primary alone)")
	db := fs.String("db", "poolset", "database to create on the primary")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("%s: unexpected argument %q", fs.Name(), fs.Arg(0))
	}
	if *replicas < 0 {
		return usagef("--replicas: must be 0 or more (0: a primary alone, to stop or pause by hand)")
	}
	abs, err := filepath.Abs(*dir)
	if err != nil {
		return usagef("--dir: %v", err)
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
		fmt.Fprintf(stdout, "\ntry: poolset demo --mysql '%s' --replica '%s'\n", p.Primary.DSN(*db), p.Replicas[0].DSN(*db))
	}
	fmt.Fprintf(stdout, "Ctrl-C stops the servers.\n")
	<-ctx.Done()
	return p.Stop()
}
