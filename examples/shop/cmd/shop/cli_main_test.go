package main

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	gomysql "github.com/go-sql-driver/mysql"

	"github.com/poolset/poolset/examples/shop/productcache"
	"github.com/poolset/poolset/mysql"
	"github.com/poolset/poolset/poolsettest"
	"github.com/poolset/poolset/postgres"
)

// poolsetBin is the path of the poolset binary TestMain builds once for
// every test that runs the command as a process.
var poolsetBin string

// runTimeout bounds each run of the binary.
const runTimeout = 2 * time.Minute

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "poolset-cli-test-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "poolset tests: %v\n", err)
		return 1
	}
	defer os.RemoveAll(dir)
	poolsetBin = filepath.Join(dir, "poolset")
	args := []string{"build", "-o", poolsetBin}
	if raceEnabled() {
		// A binary built like the tests reports its own data races.
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, ".")...)
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "poolset tests: go %s: %v\n%s", strings.Join(args, " "), err, out)
		return 1
	}
	return m.Run()
}

// raceEnabled reports whether the test binary was built with -race.
func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

// result is the outcome of one run of the binary.
type result struct {
	code           int
	stdout, stderr string
}

// cleanEnv returns os.Environ() without any POOLSET_* variable, plus extra.
func cleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "POOLSET_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// command returns the binary with args, in a temporary working directory
// (so that the default ./poolset-data lands there), with a clean
// environment plus env, stdout and stderr captured apart.
func command(t *testing.T, ctx context.Context, env []string, args ...string) (*exec.Cmd, *bytes.Buffer, *bytes.Buffer) {
	t.Helper()
	cmd := exec.CommandContext(ctx, poolsetBin, args...)
	cmd.Dir = t.TempDir()
	cmd.Env = cleanEnv(env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	return cmd, &stdout, &stderr
}

// runPoolset runs the binary with args to its end and returns its exit code
// and output. It fails t if the binary cannot be run at all.
func runPoolset(t *testing.T, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), runTimeout)
	defer cancel()
	cmd, stdout, stderr := command(t, ctx, env, args...)
	return finish(t, cmd.Run(), stdout, stderr)
}

// finish turns the error of a finished run into a result.
func finish(t *testing.T, err error, stdout, stderr *bytes.Buffer) result {
	t.Helper()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("run poolset: %v\nstderr:\n%s", err, r.stderr)
	}
	if strings.Contains(r.stderr, "DATA RACE") {
		t.Errorf("the binary reported a data race:\n%s", r.stderr)
	}
	return r
}

// nonEmptyLines returns the lines of s that are not blank.
func nonEmptyLines(s string) []string {
	var out []string
	for line := range strings.Lines(s) {
		if strings.TrimSpace(line) != "" {
			out = append(out, strings.TrimRight(line, "\n"))
		}
	}
	return out
}

// adminDB opens a one-connection *sql.DB on the test server with no
// default database, so that it is never counted among the connections to a
// test's database. It is closed when t ends unless the caller closes it
// first.
func adminDB(t *testing.T) *sql.DB {
	t.Helper()
	cfg, err := gomysql.ParseDSN(poolsettest.MySQLDSN(t))
	if err != nil {
		t.Fatalf("parse test DSN: %v", err)
	}
	cfg.DBName = ""
	conn, err := gomysql.NewConnector(cfg)
	if err != nil {
		t.Fatalf("admin connector: %v", err)
	}
	db := sql.OpenDB(conn)
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	if err := db.PingContext(t.Context()); err != nil {
		t.Fatalf("admin ping: %v", err)
	}
	return db
}

// postgresAdminDB opens a one-connection *sql.DB on the PostgreSQL database
// at dsn, as application poolset-test. It is closed when t ends.
func postgresAdminDB(t *testing.T, dsn string) *sql.DB {
	t.Helper()
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	pc, err := postgres.Primary(dsn + sep + "application_name=poolset-test")
	if err != nil {
		t.Fatalf("admin: %v", err)
	}
	db := sql.OpenDB(pc.Connector)
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	if err := db.PingContext(t.Context()); err != nil {
		t.Fatalf("admin ping: %v", err)
	}
	return db
}

// globalStatus returns the server's status variable name or fails t.
func globalStatus(t *testing.T, db *sql.DB, name string) int64 {
	t.Helper()
	v, err := mysql.GlobalStatus(t.Context(), db, name)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return v
}

// eventually calls check every 20 ms until it reports true or within has
// passed, and returns check's last answer. It bounds a wait for the server
// to catch up; it asserts nothing about time.
func eventually(within time.Duration, check func() bool) bool {
	deadline := time.Now().Add(within)
	for {
		if check() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// peakSampler counts the server's connections to dbName every 5 ms on db
// until stop is called; stop waits for the sampling goroutine to end and
// returns the highest count seen. Stopping never cancels a query in
// flight: that would make the server count an aborted client.
func peakSampler(db *sql.DB, dbName string) (stop func() int) {
	quit := make(chan struct{})
	done := make(chan int)
	go func() {
		peak := 0
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			if n, err := mysql.ConnectionsTo(context.Background(), db, dbName); err == nil && n > peak {
				peak = n
			}
			select {
			case <-quit:
				done <- peak
				return
			case <-t.C:
			}
		}
	}()
	return func() int { close(quit); return <-done }
}

// connectionsTo waits up to within for the server's connections to dbName
// to drop to 0, and returns the last count.
func connectionsTo(t *testing.T, db *sql.DB, dbName string, within time.Duration) int {
	t.Helper()
	var n int
	eventually(within, func() bool {
		var err error
		if n, err = mysql.ConnectionsTo(t.Context(), db, dbName); err != nil {
			t.Fatalf("%v", err)
		}
		return n == 0
	})
	return n
}

// redisClientCounter opens a Redis client of the test's own (closed when t
// ends) and returns a function that reads the server's connected_clients,
// this client included. It skips t when Redis does not answer.
func redisClientCounter(t *testing.T, url string) func() int64 {
	t.Helper()
	rc, err := productcache.Open(t.Context(), productcache.Options{URL: url})
	if err != nil {
		poolsettest.Skip(t, "redis: %v", err)
	}
	t.Cleanup(func() { rc.Close() })
	return func() int64 {
		n, err := rc.ConnectedClients(t.Context())
		if err != nil {
			t.Fatalf("%v", err)
		}
		return n
	}
}
