// Command dbpair is a development tool, not part of the shop service: it
// starts a MariaDB primary with GTID replicas, or with --postgres a
// PostgreSQL primary with streaming standbys, on free ports (the machine's
// mariadbd or PostgreSQL 15 binaries), prints their DSNs and pids, and
// stops them (by pid) on the first signal. It links poolsettest, the
// tests' server launcher, which the shop binary never does.
//
// Usage:
//
//	dbpair [--postgres] [--dir ./poolset-pair] [--replicas 1] [--db poolset]
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
		fmt.Fprintf(os.Stderr, "dbpair: %v\n", err)
		if err == flag.ErrHelp {
			os.Exit(0)
		}
		os.Exit(2)
	}
}

// server is one started server, as printed.
type server struct {
	name, dsn, log string
	pid            int
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("dbpair", flag.ContinueOnError)
	fs.SetOutput(stderr)
	pg := fs.Bool("postgres", false, "PostgreSQL (primary and streaming standbys) instead of MariaDB (primary and GTID replicas)")
	dir := fs.String("dir", "./poolset-pair", "directory for the servers' data (removed first)")
	replicas := fs.Int("replicas", 1, "number of replicas or standbys (0: a primary alone)")
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
	var servers []server
	var stopAll func() error
	if *pg {
		p, err := poolsettest.StartPostgresPair(sctx, abs, *db, *replicas)
		if err != nil {
			return fmt.Errorf("pair: %w", err)
		}
		stopAll = p.Stop
		servers = append(servers, server{"primary", p.Primary.DSN(*db), p.Primary.LogPath, p.Primary.Pid()})
		for _, s := range p.Standbys {
			servers = append(servers, server{s.Name, s.DSN(*db), s.LogPath, s.Pid()})
		}
	} else {
		p, err := poolsettest.StartPair(sctx, abs, *db, *replicas)
		if err != nil {
			return fmt.Errorf("pair: %w", err)
		}
		stopAll = p.Stop
		servers = append(servers, server{"primary", p.Primary.DSN(*db), "", p.Primary.Pid()})
		for _, r := range p.Replicas {
			servers = append(servers, server{r.Name, r.DSN(*db), "", r.Pid()})
		}
	}
	defer stopAll()
	for _, s := range servers {
		fmt.Fprintf(stdout, "%-10s %s (pid %d", s.name+":", s.dsn, s.pid)
		if s.log != "" {
			fmt.Fprintf(stdout, ", log %s", s.log)
		}
		fmt.Fprintln(stdout, ")")
	}
	if len(servers) > 1 {
		flagName := "--mysql"
		if *pg {
			flagName = "--postgres"
		}
		fmt.Fprintf(stdout, "\ntry: go run ./examples/shop/cmd/shop demo %s '%s' --replica '%s'\n", flagName, servers[0].dsn, servers[1].dsn)
	}
	fmt.Fprintf(stdout, "Ctrl-C stops the servers.\n")
	<-ctx.Done()
	return stopAll()
}
