package main

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/poolset/poolset/examples/shop/natsqueue"
	"github.com/poolset/poolset/examples/shop/rabbitqueue"
	"github.com/poolset/poolset/examples/shop/shoptest"
	"github.com/poolset/poolset/examples/shop/worker"
	"github.com/poolset/poolset/mysql"
	"github.com/poolset/poolset/poolsettest"
)

// The worker tests run the binary's seed, load, worker and verify commands
// against the real MariaDB and one broker at a time, as subtests "nats" and
// "rabbitmq". Each subtest has a database of its own. On NATS each has a
// nats-server process of its own (shoptest.StartServerProcess). On
// RabbitMQ, whose exchange and queue names are fixed, each holds the
// cross-process "rabbitmq" lock, uses the tests' own vhost when rabbitmqctl
// can make it, and starts from purged queues.

// workerBrokers are the brokers each worker test runs on, as subtests.
var workerBrokers = []string{"nats", "rabbitmq"}

// Sizes of the worker tests' shop: small enough for two cores under -race.
const (
	wkOrders   = 2000
	wkUsers    = "1000"
	wkProducts = "100"
	wkStock    = "1000000"
	// wkRejected is how many of the wkOrders orders come from an unknown
	// user: every 100th (load's default --unknown-every).
	wkRejected = wkOrders / 100
)

// procTimeout bounds each worker process a test starts.
const procTimeout = 90 * time.Second

// testBroker is the broker of one worker subtest.
type testBroker struct {
	kind string                  // "nats" or "rabbitmq"
	url  string                  // for --broker
	nats *shoptest.ServerProcess // the private server, on NATS
}

// setupBroker returns a broker private to t: a nats-server process of its
// own for "nats"; for "rabbitmq" the shared server, with the "rabbitmq"
// lock held until t ends and the shop queue and its dead letter purged.
// Callers that also lock poolsettest.SharedServers take that lock first.
func setupBroker(t *testing.T, kind string) testBroker {
	t.Helper()
	switch kind {
	case "nats":
		p := shoptest.StartServerProcess(t)
		return testBroker{kind: kind, url: p.URL(), nats: p}
	case "rabbitmq":
		amqpURL := rabbitTestURL(t, poolsettest.AMQPURL(t))
		// SharedServers before "rabbitmq", as LockServer asks; a test
		// that holds it exclusively already re-enters it.
		poolsettest.ShareServer(t, poolsettest.SharedServers)
		poolsettest.LockServer(t, "rabbitmq")
		b := openTestBroker(t, testBroker{kind: kind, url: amqpURL})
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		if err := b.Purge(ctx); err != nil {
			t.Fatalf("purge: %v", err)
		}
		if err := b.Close(ctx); err != nil {
			t.Fatalf("close: %v", err)
		}
		return testBroker{kind: kind, url: amqpURL}
	}
	t.Fatalf("unknown broker %q", kind)
	return testBroker{}
}

// brokerConn is what the tests use of their own broker connection.
type brokerConn interface {
	Publisher() worker.Publisher
	Pending(ctx context.Context) (int64, error)
	DeadLetters(ctx context.Context) ([]worker.DeadLetter, error)
	Purge(ctx context.Context) error
	Close(ctx context.Context) error
}

// openTestBroker opens a connection of the test's own to tb, closed when t
// ends unless the caller closes it first (Close is idempotent).
func openTestBroker(t *testing.T, tb testBroker) brokerConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var c brokerConn
	switch tb.kind {
	case "nats":
		b, err := natsqueue.Open(ctx, natsqueue.Options{URL: tb.url, Logger: log, Name: "poolset-test"})
		if err != nil {
			t.Fatalf("open nats: %v", err)
		}
		c = b
	case "rabbitmq":
		b, err := rabbitqueue.Open(ctx, rabbitqueue.Options{URL: tb.url, Logger: log, ConnectionName: "poolset-test"})
		if err != nil {
			t.Fatalf("open rabbitmq: %v", err)
		}
		c = b
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c.Close(ctx)
	})
	return c
}

// shopDB is a worker test's database, on MariaDB or PostgreSQL: its DSN
// for the commands and an admin connection for counting. On MariaDB the
// admin connection has no default database; on PostgreSQL it is a session
// in the test's database (application_name poolset-test) that the counts
// of connections leave out.
type shopDB struct {
	flag  string // "--mysql" or "--postgres"
	name  string
	dsn   string
	admin *sql.DB
}

// newShopDB creates the fresh MariaDB database name for t.
func newShopDB(t *testing.T, name string) shopDB {
	t.Helper()
	return shopDB{flag: "--mysql", name: name, dsn: poolsettest.MySQLDatabase(t, name), admin: adminDB(t)}
}

// newPostgresShopDB creates the fresh PostgreSQL database name for t.
func newPostgresShopDB(t *testing.T, name string) shopDB {
	t.Helper()
	dsn := poolsettest.PostgresDatabase(t, name)
	return shopDB{flag: "--postgres", name: name, dsn: dsn, admin: postgresAdminDB(t, dsn)}
}

// postgres reports whether d is on PostgreSQL.
func (d shopDB) postgres() bool { return d.flag == "--postgres" }

// orders returns how many orders the database holds.
func (d shopDB) orders(t *testing.T) int {
	t.Helper()
	var n int
	q := "SELECT COUNT(*) FROM `" + d.name + "`.orders"
	if d.postgres() {
		q = "SELECT COUNT(*) FROM orders"
	}
	if err := d.admin.QueryRowContext(t.Context(), q).Scan(&n); err != nil {
		t.Fatalf("count orders: %v", err)
	}
	return n
}

// connections returns the server's connections to d's database, the admin
// connection left out.
func (d shopDB) connections(t *testing.T) int {
	t.Helper()
	n, err := d.countConnections(t.Context())
	if err != nil {
		t.Fatalf("%v", err)
	}
	return n
}

// countConnections counts the server's connections to d's database, the
// admin connection left out.
func (d shopDB) countConnections(ctx context.Context) (int, error) {
	if !d.postgres() {
		return mysql.ConnectionsTo(ctx, d.admin, d.name)
	}
	var n int
	err := d.admin.QueryRowContext(ctx, "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", d.name).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("pg_stat_activity: %w", err)
	}
	return n, nil
}

// seedShop seeds d's users and products; it fails t unless seed exits 0.
func seedShop(t *testing.T, d shopDB) {
	t.Helper()
	r := runPoolset(t, quickExit(), "seed", d.flag, d.dsn, "--users", wkUsers, "--products", wkProducts, "--stock", wkStock)
	if r.code != exitOK {
		t.Fatalf("seed: got exit code %d; want 0\nstderr:\n%s", r.code, r.stderr)
	}
}

// loadOrders publishes orders o-1..o-n to b; it fails t unless load exits 0.
func loadOrders(t *testing.T, b testBroker, n int) {
	t.Helper()
	r := runPoolset(t, quickExit(), "load", "--broker", b.url, "--orders", strconv.Itoa(n), "--users", wkUsers, "--products", wkProducts, "--json")
	if r.code != exitOK {
		t.Fatalf("load: got exit code %d; want 0\nstderr:\n%s", r.code, r.stderr)
	}
}

// verifyOrders runs verify --expect-orders n on d and returns its result; it
// fails t unless verify exits 0 and reports ok.
func verifyOrders(t *testing.T, d shopDB, n int) verifyResult {
	t.Helper()
	r := runPoolset(t, quickExit(), "verify", d.flag, d.dsn, "--expect-orders", strconv.Itoa(n), "--json")
	var res verifyResult
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatalf("verify: stdout is not JSON: %v\nstdout:\n%s\nstderr:\n%s", err, r.stdout, r.stderr)
	}
	if r.code != exitOK || !res.OK {
		t.Errorf("verify: got exit code %d, ok %v; want 0, true\nstdout: %s\nstderr:\n%s", r.code, res.OK, r.stdout, r.stderr)
	}
	if e := res.Expected; e == nil || e.Found != int64(n) {
		t.Errorf("verify: got expected %+v; want %d of %d found", e, n, n)
	}
	if len(res.Check.StockErrors) > 0 {
		t.Errorf("verify: got stock errors %v; want none", res.Check.StockErrors)
	}
	return res
}

// quickExit returns the environment that drops the race detector's sleep
// of a second at exit (GORACE atexit_sleep_ms, default 1000) from the
// binary TestMain built with -race, keeping any other GORACE option, so
// that the time from a signal to the exit is the program's own.
func quickExit() []string {
	return []string{"GORACE=" + strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0")}
}

// workerProc is a worker process started in the background.
type workerProc struct {
	t              *testing.T
	cmd            *exec.Cmd
	stdout, stderr poolsettest.Buffer
	done           chan struct{} // closed when the process has exited
	err            error         // cmd.Wait's, set before done closes
	signalledAt    time.Time     // when the last signal was sent
	exitedAt       time.Time
}

// startWorker starts `poolset worker --mysql|--postgres d.dsn --broker b.url --json`
// with no admin endpoint (unless args set --admin) and args, bounded by
// procTimeout. The process is killed, and waited for, when t ends.
func startWorker(t *testing.T, d shopDB, b testBroker, args ...string) *workerProc {
	t.Helper()
	return startProc(t, append([]string{"worker", d.flag, d.dsn, "--broker", b.url, "--json", "--admin", ""}, args...)...)
}

// startProc starts the binary with args in the background, bounded by
// procTimeout. The process is killed, and waited for, when t ends.
func startProc(t *testing.T, all ...string) *workerProc {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), procTimeout)
	w := &workerProc{t: t, done: make(chan struct{})}
	w.cmd = exec.CommandContext(ctx, poolsetBin, all...)
	w.cmd.Dir = t.TempDir()
	w.cmd.Env = cleanEnv(quickExit()...)
	w.cmd.Stdout, w.cmd.Stderr = &w.stdout, &w.stderr
	if err := w.cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start %s: %v", all[0], err)
	}
	go func() { // ends when the process exits: at the latest at procTimeout
		w.err = w.cmd.Wait()
		w.exitedAt = time.Now()
		cancel()
		close(w.done)
	}()
	t.Cleanup(func() {
		select {
		case <-w.done:
		default:
			w.cmd.Process.Kill()
			<-w.done
		}
	})
	return w
}

// signal sends sig to the worker.
func (w *workerProc) signal(sig os.Signal) {
	w.t.Helper()
	w.signalledAt = time.Now()
	if err := w.cmd.Process.Signal(sig); err != nil {
		w.t.Fatalf("signal worker: %v", err)
	}
}

// exited reports whether the process has exited.
func (w *workerProc) exited() bool {
	select {
	case <-w.done:
		return true
	default:
		return false
	}
}

// wait waits for the process to exit (procTimeout bounds it) and returns
// its result.
func (w *workerProc) wait() result {
	w.t.Helper()
	<-w.done
	var out, errOut bytes.Buffer
	out.WriteString(w.stdout.String())
	errOut.WriteString(w.stderr.String())
	return finish(w.t, w.err, &out, &errOut)
}

// summary waits for the worker and returns its exit code and JSON summary.
func (w *workerProc) summary() (result, workerSummaryJSON) {
	w.t.Helper()
	r := w.wait()
	var s workerSummaryJSON
	if r.code == exitOK || r.code == exitAbandoned {
		if err := json.Unmarshal([]byte(r.stdout), &s); err != nil {
			w.t.Fatalf("worker: stdout is not a JSON summary: %v\nstdout:\n%s\nstderr:\n%s", err, r.stdout, tail(r.stderr, 40))
		}
	}
	return r, s
}

// workerSummaryJSON is the part of the worker's JSON summary the tests read.
type workerSummaryJSON struct {
	Command string         `json:"command"`
	Worker  worker.Summary `json:"worker"`
	Elapsed time.Duration  `json:"elapsed_ns"`
	Release struct {
		Steps []struct {
			Name    string `json:"name"`
			Outcome string `json:"outcome"`
		} `json:"steps"`
	} `json:"release"`
	OK bool `json:"ok"`
}

// wantReleaseOrder fails t unless the summary's release ran exactly the
// steps want, in that order, each ok.
func wantReleaseOrder(t *testing.T, s workerSummaryJSON, want ...string) {
	t.Helper()
	var got []string
	for _, st := range s.Release.Steps {
		got = append(got, st.Name)
		if st.Outcome != "ok" {
			t.Errorf("release step %q: got outcome %q; want ok", st.Name, st.Outcome)
		}
	}
	if strings.Join(got, ", ") != strings.Join(want, ", ") {
		t.Errorf("release steps: got [%s]; want [%s]", strings.Join(got, ", "), strings.Join(want, ", "))
	}
}

// wantCleanExit fails t unless the worker exited 0 with an ok summary and
// nothing abandoned, and returns the summary.
func wantCleanExit(t *testing.T, name string, w *workerProc) workerSummaryJSON {
	t.Helper()
	r, s := w.summary()
	if r.code != exitOK {
		t.Fatalf("%s: got exit code %d; want 0\nstdout: %s\nstderr:\n%s", name, r.code, r.stdout, tail(r.stderr, 40))
	}
	if s.Worker.Abandoned != 0 || !s.OK {
		t.Errorf("%s: got abandoned %d, ok %v; want 0, true", name, s.Worker.Abandoned, s.OK)
	}
	t.Logf("%s: %+v", name, s.Worker)
	t.Logf("%s: %.0f orders/s over %s busy, ran %s", name, s.Worker.Rate, s.Worker.Busy.Round(time.Millisecond), s.Elapsed.Round(time.Millisecond))
	return s
}

// waitOrders polls d's order count until it reaches at least n, and returns
// the count. It fails t if the worker exits first, or after a minute.
func waitOrders(t *testing.T, d shopDB, w *workerProc, n int) int {
	t.Helper()
	var got int
	ok := eventually(time.Minute, func() bool {
		got = d.orders(t)
		return got >= n || w.exited()
	})
	if got < n || !ok {
		w.cmd.Process.Kill()
		r := w.wait()
		t.Fatalf("waiting for %d orders: got %d; the worker exited with code %d\nstderr:\n%s", n, got, r.code, tail(r.stderr, 40))
	}
	return got
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// freeAddr returns a 127.0.0.1 address with a port free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().String()
}

// httpGet returns the status and body of GET url, or status 0 when the
// request fails.
func httpGet(client *http.Client, rawURL string) (int, string) {
	resp, err := client.Get(rawURL)
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitReady polls the worker's /readyz at addr until it answers 200; it
// fails t if the worker exits first, or after 30 s.
func waitReady(t *testing.T, w *workerProc, addr string) {
	t.Helper()
	client := &http.Client{Timeout: time.Second}
	if !eventually(30*time.Second, func() bool {
		code, _ := httpGet(client, "http://"+addr+"/readyz")
		return code == http.StatusOK || w.exited()
	}) || w.exited() {
		w.cmd.Process.Kill()
		r := w.wait()
		t.Fatalf("worker never ready at %s: exit code %d\nstderr:\n%s", addr, r.code, tail(r.stderr, 40))
	}
}

// tcpPortsTo returns the local ports of pid's TCP connections to
// remotePort, from /proc (Linux).
func tcpPortsTo(pid, remotePort int) ([]int, error) {
	fdDir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(fdDir)
	if err != nil {
		return nil, err
	}
	inodes := map[string]bool{}
	for _, e := range ents {
		link, err := os.Readlink(filepath.Join(fdDir, e.Name()))
		if err == nil && strings.HasPrefix(link, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")] = true
		}
	}
	var ports []int
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		f, err := os.Open(table)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		sc.Scan() // header
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 10 || !inodes[fields[9]] {
				continue
			}
			local, remote := hexPort(fields[1]), hexPort(fields[2])
			if remote == remotePort {
				ports = append(ports, local)
			}
		}
		f.Close()
	}
	return ports, nil
}

// hexPort returns the port of a /proc/net/tcp address such as
// 0100007F:1628.
func hexPort(addr string) int {
	i := strings.LastIndex(addr, ":")
	p, _ := strconv.ParseInt(addr[i+1:], 16, 32)
	return int(p)
}

// rabbitConnections returns the rabbitmqctl connection ids (Erlang pids)
// of the AMQP connections whose client port is in ports.
func rabbitConnections(t *testing.T, ports []int) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "rabbitmqctl", "-q", "list_connections", "pid", "peer_port").Output()
	if err != nil {
		poolsettest.Skip(t, "rabbitmqctl list_connections: %v", err)
	}
	var pids []string
	for line := range strings.Lines(string(out)) {
		f := strings.Fields(line)
		if len(f) != 2 || !strings.HasPrefix(f[0], "<") {
			continue // the header
		}
		port, _ := strconv.Atoi(f[1])
		for _, p := range ports {
			if port == p {
				pids = append(pids, f[0])
			}
		}
	}
	return pids
}

// closeRabbitConnection has the RabbitMQ server close the connection pid
// with reason, with rabbitmqctl.
func closeRabbitConnection(t *testing.T, pid, reason string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "rabbitmqctl", "-q", "close_connection", pid, reason).CombinedOutput(); err != nil {
		t.Fatalf("rabbitmqctl close_connection %s: %v\n%s", pid, err, out)
	}
}

// rabbitVhost is the RabbitMQ virtual host the worker tests use, created
// once per test binary and kept for later runs: the shop's exchange and
// queue names are fixed, and a vhost of their own keeps the tests apart
// from anything else using them on the default vhost.
var rabbitVhost struct {
	once sync.Once
	name string // empty when it could not be made: use the URL's
	err  error
}

// testVhost is the name of the tests' virtual host.
const testVhost = "poolset-test-cmd"

// rabbitTestURL returns base with the tests' virtual host, creating it
// (with rabbitmqctl, for base's user) the first time. Without rabbitmqctl
// it returns base, whose vhost the lock and purge still keep apart from
// other tests that follow the same rule.
func rabbitTestURL(t *testing.T, base string) string {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("AMQP URL: %v", err)
	}
	rabbitVhost.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		ctl := func(args ...string) (string, error) {
			out, err := exec.CommandContext(ctx, "rabbitmqctl", append([]string{"-q"}, args...)...).CombinedOutput()
			return string(out), err
		}
		list, err := ctl("list_vhosts")
		if err != nil {
			rabbitVhost.err = fmt.Errorf("rabbitmqctl list_vhosts: %v: %s", err, list)
			return
		}
		exists := false
		for line := range strings.Lines(list) {
			exists = exists || strings.TrimSpace(line) == testVhost
		}
		if !exists {
			if out, err := ctl("add_vhost", testVhost); err != nil && !strings.Contains(out, "already exists") {
				rabbitVhost.err = fmt.Errorf("rabbitmqctl add_vhost: %v: %s", err, out)
				return
			}
		}
		if out, err := ctl("set_permissions", "-p", testVhost, u.User.Username(), ".*", ".*", ".*"); err != nil {
			rabbitVhost.err = fmt.Errorf("rabbitmqctl set_permissions: %v: %s", err, out)
			return
		}
		rabbitVhost.name = testVhost
	})
	if rabbitVhost.name == "" {
		t.Logf("RabbitMQ: using the URL's vhost: %v", rabbitVhost.err)
		return base
	}
	u.Path, u.RawPath = "/"+rabbitVhost.name, ""
	return u.String()
}
