// Command poolset is the shop reference service built on the poolset
// library: it opens each pool once, shares it among the shop's
// repositories, sends user reads to the read pool, and releases everything
// in order at the end.
//
// Usage:
//
//	poolset demo    [flags]   migrate, seed, run a mixed load, print the pools tree and the release report
//	poolset migrate [flags]   bring the schema up to date
//	poolset seed    [flags]   store users and products
//	poolset bench sharing [flags]   one shared pool vs one pool per repository (MariaDB/MySQL)
//
// Every subcommand that opens pools takes --mysql, --replica, --redis,
// --data and --json (see README.md). Exit codes: 0 success, 1 runtime
// failure, 2 usage or configuration error.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

// Exit codes.
const (
	exitOK      = 0
	exitRuntime = 1
	exitUsage   = 2
)

// usageError is a usage or configuration error: exit code 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usageText = `usage: poolset <command> [flags]

commands:
  demo            migrate, seed, run a mixed load through the three repositories,
                  print the pools tree and the release report
  migrate         bring the schema up to date
  seed            store users and products
  bench sharing   the mixed load on one shared primary pool vs one pool per repository

Run 'poolset <command> -h' for its flags.
`

// run runs the command in args and returns the exit code. Logs go to
// stderr; results to stdout.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
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
	case "bench":
		if len(args) < 2 || args[1] != "sharing" {
			err = usagef("bench: unknown benchmark (want: poolset bench sharing)")
			break
		}
		err = cmdBenchSharing(ctx, args[2:], stdout, stderr, log)
	case "-h", "-help", "--help", "help":
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
	fmt.Fprintf(stderr, "poolset: %v\n", err)
	var ue *usageError
	if errors.As(err, &ue) {
		return exitUsage
	}
	return exitRuntime
}
