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
	replicas := fs.Int("replicas", 1, "number of replicas")
	db := fs.String("db", "poolset", "database to create on the primary")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("%s: unexpected argument %q", fs.Name(), fs.Arg(0))
	}
	if *replicas < 1 {
		return usagef("--replicas: must be at least 1")
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
	fmt.Fprintf(stdout, "primary:   %s\n", p.Primary.DSN(*db))
	for _, r := range p.Replicas {
		fmt.Fprintf(stdout, "%s: %s\n", r.Name, r.DSN(*db))
	}
	fmt.Fprintf(stdout, "\ntry: poolset demo --mysql '%s' --replica '%s'\nCtrl-C stops the servers.\n", p.Primary.DSN(*db), p.Replicas[0].DSN(*db))
	<-ctx.Done()
	return p.Stop()
}
