package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/poolset/poolset"
	"github.com/poolset/poolset/examples/shop/productcache"
	"github.com/poolset/poolset/mysql"
)

// errHelp is returned when -h or --help was asked for: the usage was
// printed on stdout, and the exit code is 0.
var errHelp = errors.New("help shown")

// config is what every subcommand that opens pools reads from its flags and
// the environment. Flags win over environment variables.
type config struct {
	MySQL         string        // --mysql [POOLSET_MYSQL_DSN]; empty = embedded SQLite
	Postgres      string        // --postgres [POOLSET_POSTGRES_DSN]; excludes --mysql
	Replicas      []string      // --replica [POOLSET_REPLICA_DSN]
	Redis         string        // --redis [POOLSET_REDIS_URL]; empty = no cache
	Broker        string        // --broker [POOLSET_BROKER_URL]; empty = embedded NATS
	Data          string        // --data [POOLSET_DATA]
	JSON          bool          // --json
	MaxOpen       int           // --max-open
	LeakThreshold time.Duration // --leak-threshold
	MaxLag        time.Duration // --max-lag
	AckWait       time.Duration // --ack-wait
	Prefetch      int           // --prefetch
}

// replicaList is a repeatable, comma-separated flag.
type replicaList []string

func (r *replicaList) String() string { return strings.Join(*r, ",") }
func (r *replicaList) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*r = append(*r, s)
		}
	}
	return nil
}

// newFlagSet returns a flag set for subcommand name with the common flags
// bound to cfg, defaults taken from the environment. Its usage (for -h,
// -help or --help) goes to stdout; parse errors are not printed here but
// returned, and run reports them in one line on stderr.
func newFlagSet(name string, stdout io.Writer, cfg *config) (fs *flag.FlagSet) {
	fs = newCommandFlags(name, stdout)
	fs.StringVar(&cfg.MySQL, "mysql", os.Getenv("POOLSET_MYSQL_DSN"), "primary MariaDB/MySQL `DSN` (user:pass@tcp(host:port)/db); empty = embedded SQLite [POOLSET_MYSQL_DSN]")
	fs.StringVar(&cfg.Postgres, "postgres", os.Getenv("POOLSET_POSTGRES_DSN"), "primary PostgreSQL `DSN` (postgres://user:pass@host:port/db?... or host=... dbname=...); not with --mysql [POOLSET_POSTGRES_DSN]")
	rl := (*replicaList)(&cfg.Replicas)
	if env := os.Getenv("POOLSET_REPLICA_DSN"); env != "" {
		rl.Set(env)
	}
	fs.Var(rl, "replica", "read pool `DSN` (a MySQL replica, or a PostgreSQL standby with --postgres), repeatable or comma-separated [POOLSET_REPLICA_DSN]")
	fs.StringVar(&cfg.Redis, "redis", os.Getenv("POOLSET_REDIS_URL"), "Redis `URL` for the product cache; empty = no cache [POOLSET_REDIS_URL]")
	fs.StringVar(&cfg.Broker, "broker", os.Getenv("POOLSET_BROKER_URL"), "broker `URL`: nats://host:port or amqp://user:pass@host:port/; empty = embedded NATS [POOLSET_BROKER_URL]")
	data := os.Getenv("POOLSET_DATA")
	if data == "" {
		data = "./poolset-data"
	}
	fs.StringVar(&cfg.Data, "data", data, "`dir`ectory for embedded state (SQLite) [POOLSET_DATA]")
	fs.BoolVar(&cfg.JSON, "json", false, "print the final summary as one JSON object on stdout")
	fs.IntVar(&cfg.MaxOpen, "max-open", poolset.DefaultMaxOpen, "most connections of each SQL pool (SQLite's primary always has 1)")
	fs.DurationVar(&cfg.LeakThreshold, "leak-threshold", 0, "log connections held longer than this, with the acquiring stack (0 = off)")
	fs.DurationVar(&cfg.AckWait, "ack-wait", 30*time.Second, "NATS: how long a message taken by a worker that died stays invisible before it is redelivered")
	fs.IntVar(&cfg.Prefetch, "prefetch", 1000, "RabbitMQ: most unacked messages pushed to one worker (deeper is faster alone, shallower shares the queue better among workers)")
	fs.DurationVar(&cfg.MaxLag, "max-lag", mysql.DefaultMaxLag, "a replica lagging more than this leaves the read rotation until it catches up")
	return fs
}

// newCommandFlags returns an empty flag set for subcommand name whose
// usage, shown by parseFlags for -h, -help or --help, goes to stdout.
func newCommandFlags(name string, stdout io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("shop "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {
		fmt.Fprintf(stdout, "usage: %s [flags]\n", fs.Name())
		if s := commandSummary(name); s != "" {
			fmt.Fprintf(stdout, "\n%s\n", s)
		}
		fmt.Fprintf(stdout, "\nflags:\n  -h, --help\n    \tshow this help\n")
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	return fs
}

// parseFlags parses args into fs. For -h, -help or --help it prints the
// usage and returns errHelp; any other error is a usage error naming the
// flag, with what looks like a password redacted.
func parseFlags(fs *flag.FlagSet, args []string) error {
	// The flag package calls Usage on every error; only help shows it.
	usage := fs.Usage
	fs.Usage = func() {}
	err := fs.Parse(args)
	fs.Usage = usage
	if errors.Is(err, flag.ErrHelp) {
		usage()
		return errHelp
	}
	if err != nil {
		return usagef("%s (see '%s -h')", poolset.Redact(err.Error()), fs.Name())
	}
	return nil
}

// parse parses args into fs and checks cfg. Errors are usage errors.
func parse(fs *flag.FlagSet, args []string, cfg *config) error {
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("%s: unexpected argument %q", fs.Name(), fs.Arg(0))
	}
	if cfg.Prefetch <= 0 {
		return usagef("--prefetch: must be positive, got %d", cfg.Prefetch)
	}
	if cfg.AckWait <= 0 {
		return usagef("--ack-wait: must be positive, got %s", cfg.AckWait)
	}
	if cfg.MaxOpen <= 0 {
		return usagef("--max-open: must be positive, got %d", cfg.MaxOpen)
	}
	if cfg.MySQL != "" && cfg.Postgres != "" {
		return usagef("--mysql and --postgres: set one (from the flags or POOLSET_MYSQL_DSN and POOLSET_POSTGRES_DSN)")
	}
	if cfg.MaxLag < 0 {
		return usagef("--max-lag: must not be negative, got %s", cfg.MaxLag)
	}
	b := backendFor(*cfg)
	if b.dsn != "" {
		if _, err := b.primary(cfg.MaxOpen); err != nil {
			return usagef("%s: %v", b.flag, err)
		}
	}
	if len(cfg.Replicas) > 0 && b.dsn == "" {
		return usagef("--replica: needs --mysql or --postgres (the embedded SQLite has its own read pool)")
	}
	for _, r := range cfg.Replicas {
		if _, err := b.replica(r, cfg.MaxLag, cfg.MaxOpen); err != nil {
			return usagef("--replica: %v", err)
		}
	}
	if cfg.Redis != "" {
		if err := productcache.CheckURL(cfg.Redis); err != nil {
			return usagef("--redis: %v", err)
		}
	}
	if b := cfg.Broker; b != "" && !strings.HasPrefix(b, "nats://") && !strings.HasPrefix(b, "amqp://") && !strings.HasPrefix(b, "amqps://") {
		return usagef("--broker: want nats://host:port or amqp://user:pass@host:port/, got %s", poolset.Redact(b))
	}
	if cfg.Data == "" {
		return usagef("--data: must not be empty")
	}
	abs, err := filepath.Abs(cfg.Data)
	if err != nil {
		return usagef("--data: %v", err)
	}
	cfg.Data = abs
	return nil
}
