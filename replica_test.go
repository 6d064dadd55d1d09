package poolset_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/poolset/poolset"
	"github.com/poolset/poolset/mysql"
	"github.com/poolset/poolset/poolsettest"
)

// The tests in this file run a set against a real MariaDB primary with GTID
// replicas (poolsettest.MariaDBPair), one pair per top-level test, shared by
// its subtests in sequence. Every set is closed in a t.Cleanup, so that
// goleak finds no health checker left.

// replicaSeedUsers is how many users replicaPair writes: ids 1..100, named
// user-ID.
const replicaSeedUsers = 100

// Bounds of the polling loops. They are generous limits after which a test
// fails, not expectations of how fast things happen; the tests log the time
// each wait took.
const (
	replicaPollEvery   = 50 * time.Millisecond
	replicaLeaveBound  = 10 * time.Second
	replicaRejoinBound = 15 * time.Second
	replicaLoadBound   = 60 * time.Second // a read load's goroutines end by then
	replicaLoadMax     = 1_000_000        // ...or after this many reads each
)

// replicaPair starts a MariaDB primary with n replicas of database shop,
// creates table users with replicaSeedUsers rows on the primary and waits
// until every replica has them.
func replicaPair(t *testing.T, n int) *poolsettest.Pair {
	t.Helper()
	start := time.Now()
	pair := poolsettest.MariaDBPair(t, "shop", n)
	t.Logf("MariaDBPair with %d replica(s) took %v", n, replicaSince(start))
	db := replicaServerDB(t, pair.Primary.DSN("shop"))
	if _, err := db.ExecContext(t.Context(), "CREATE TABLE users (id BIGINT PRIMARY KEY, name VARCHAR(64))"); err != nil {
		t.Fatal(err)
	}
	var rows []string
	for id := 1; id <= replicaSeedUsers; id++ {
		rows = append(rows, fmt.Sprintf("(%d, 'user-%d')", id, id))
	}
	if _, err := db.ExecContext(t.Context(), "INSERT INTO users (id, name) VALUES "+strings.Join(rows, ", ")); err != nil {
		t.Fatal(err)
	}
	for _, r := range pair.Replicas {
		replicaCaughtUp(t, pair, r)
	}
	return pair
}

// replicaCaughtUp waits up to 15 s for r to apply everything the primary
// has written so far.
func replicaCaughtUp(t *testing.T, pair *poolsettest.Pair, r *poolsettest.Instance) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := pair.WaitCaughtUp(ctx, r); err != nil {
		t.Fatal(err)
	}
}

// replicaRunning starts r if an earlier subtest left it down, and waits
// until it has caught up.
func replicaRunning(t *testing.T, pair *poolsettest.Pair, r *poolsettest.Instance) {
	t.Helper()
	if !r.Running() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if err := r.Start(ctx); err != nil {
			t.Fatal(err)
		}
	}
	replicaCaughtUp(t, pair, r)
}

// replicaServerDB opens a plain *sql.DB of one connection on dsn, outside
// any set, and closes it at the end of the test.
func replicaServerDB(t *testing.T, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	if err := db.PingContext(t.Context()); err != nil {
		t.Fatal(err)
	}
	return db
}

// openReplicaSet opens a set on database shop with pair's primary and the
// given replicas as read pools (named after the instances, "replica-1",
// ...), as mysql.Primary and mysql.Replica build them, after edit changes
// the config. It closes the set at the end of the test.
func openReplicaSet(t *testing.T, pair *poolsettest.Pair, reads []*poolsettest.Instance, edit func(*poolset.Config)) (*poolset.Set, *poolsettest.Buffer) {
	t.Helper()
	primary, err := mysql.Primary(pair.Primary.DSN("shop"))
	if err != nil {
		t.Fatal(err)
	}
	log, logs := newLogger()
	cfg := poolset.Config{Primary: primary, Logger: log}
	for _, r := range reads {
		rc, err := mysql.Replica(r.DSN("shop"), 0)
		if err != nil {
			t.Fatal(err)
		}
		rc.Name = r.Name
		cfg.Reads = append(cfg.Reads, rc)
	}
	if edit != nil {
		edit(&cfg)
	}
	s, err := poolset.Open(t.Context(), cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s, logs
}

// replicaPool returns the stats of s's pool name.
func replicaPool(t *testing.T, s *poolset.Set, name string) poolset.PoolStats {
	t.Helper()
	for _, st := range s.Stats() {
		if st.Name == name {
			return st
		}
	}
	t.Fatalf("no pool %s in the set", name)
	return poolset.PoolStats{}
}

// replicaRepo returns repo's stats on s's pool name, zero when repo has not
// used it.
func replicaRepo(t *testing.T, s *poolset.Set, pool, repo string) poolset.RepoStats {
	t.Helper()
	for _, r := range replicaPool(t, s, pool).Repos {
		if r.Repo == repo {
			return r
		}
	}
	return poolset.RepoStats{Repo: repo}
}

// replicaEventually calls cond every 50 ms until it reports true, and
// fails t if that takes longer than bound. It logs and returns the time it
// took. cond's string describes the state, for the log and the failure.
func replicaEventually(t *testing.T, what string, bound time.Duration, cond func() (bool, string)) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		ok, state := cond()
		if ok {
			d := time.Since(start)
			t.Logf("%s after %v (%s)", what, d.Round(time.Millisecond), state)
			return d
		}
		if time.Since(start) > bound {
			t.Fatalf("%s: not within %v; last state: %s", what, bound, state)
		}
		time.Sleep(replicaPollEvery)
	}
}

// replicaHealthy waits until s's pool name is in the rotation.
func replicaHealthy(t *testing.T, s *poolset.Set, name string) time.Duration {
	t.Helper()
	return replicaEventually(t, name+" in the rotation", replicaRejoinBound, func() (bool, string) {
		st := replicaPool(t, s, name)
		return st.Healthy, fmt.Sprintf("healthy %v, unhealthy %q", st.Healthy, st.Unhealthy)
	})
}

// replicaUnhealthy waits until s's pool name has left the rotation.
func replicaUnhealthy(t *testing.T, s *poolset.Set, name string) time.Duration {
	t.Helper()
	return replicaEventually(t, name+" out of the rotation", replicaLeaveBound, func() (bool, string) {
		st := replicaPool(t, s, name)
		return !st.Healthy, fmt.Sprintf("healthy %v, unhealthy %q, leaves %d", st.Healthy, st.Unhealthy, st.Leaves)
	})
}

// readUser reads user id's name through h's Reader.
func readUser(ctx context.Context, h *poolset.Handle, id int) (string, error) {
	var name string
	err := h.Read().QueryRowContext(ctx, "SELECT name FROM users WHERE id = ?", id).Scan(&name)
	return name, err
}

// countUsers returns how many rows of users db has with one of ids.
func countUsers(t *testing.T, db *sql.DB, ids ...int) int {
	t.Helper()
	var n int
	q := "SELECT COUNT(*) FROM users WHERE id IN (" + strings.TrimSuffix(strings.Repeat("?, ", len(ids)), ", ") + ")"
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	if err := db.QueryRowContext(t.Context(), q, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// replicaLoad is goroutines reading seeded users through a Reader in a
// loop. They end at halt, after replicaLoadMax reads each, or after
// replicaLoadBound, whichever comes first; halt waits for them and is
// registered with t.Cleanup.
type replicaLoad struct {
	reads, errs atomic.Int64
	stop        chan struct{}
	once        sync.Once
	wg          sync.WaitGroup

	mu    sync.Mutex
	first []error // the first few errors
}

func startReplicaLoad(t *testing.T, h *poolset.Handle, workers int) *replicaLoad {
	l := &replicaLoad{stop: make(chan struct{})}
	deadline := time.Now().Add(replicaLoadBound)
	for w := range workers {
		l.wg.Go(func() {
			for i := 0; i < replicaLoadMax && time.Now().Before(deadline); i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				id := (w*37+i)%replicaSeedUsers + 1
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				name, err := readUser(ctx, h, id)
				cancel()
				if err == nil && name != fmt.Sprintf("user-%d", id) {
					err = fmt.Errorf("user %d: got name %q; want user-%d", id, name, id)
				}
				l.reads.Add(1)
				if err != nil {
					l.errs.Add(1)
					l.mu.Lock()
					if len(l.first) < 5 {
						l.first = append(l.first, err)
					}
					l.mu.Unlock()
				}
			}
		})
	}
	t.Cleanup(l.halt)
	return l
}

func (l *replicaLoad) halt() {
	l.once.Do(func() { close(l.stop) })
	l.wg.Wait()
}

// check halts the load and fails t if any read failed.
func (l *replicaLoad) check(t *testing.T) {
	t.Helper()
	l.halt()
	t.Logf("read load: %d reads, %d errors", l.reads.Load(), l.errs.Load())
	if got := l.errs.Load(); got != 0 {
		l.mu.Lock()
		defer l.mu.Unlock()
		t.Errorf("failed reads: got %d; want 0; first: %v", got, l.first)
	}
	if l.reads.Load() == 0 {
		t.Error("reads: got 0; want some")
	}
}

func replicaSince(start time.Time) time.Duration { return time.Since(start).Round(time.Millisecond) }

// TestReplicaRouting runs a set on a primary and one replica: a clean
// release, stale reads versus read-your-writes, writes refused by a reader,
// and a replica whose SQL thread stops leaving the rotation.
func TestReplicaRouting(t *testing.T) {
	pair := replicaPair(t, 1)
	replica := pair.Replicas[0]

	// First, so that no earlier set's connections linger in the baselines.
	t.Run("close leaves no server connection", func(t *testing.T) {
		ctx := t.Context()
		servers := append([]*poolsettest.Instance{pair.Primary}, pair.Replicas...)
		admins := make([]*sql.DB, len(servers))
		threads0 := make([]int64, len(servers))
		aborted0 := make([]int64, len(servers))
		for i, srv := range servers {
			admins[i] = replicaServerDB(t, srv.DSN(""))
			// Connections closed just before (the pair's setup) leave the
			// server's count a moment later: take a count that holds.
			last := int64(-1)
			replicaEventually(t, srv.Name+" Threads_connected steady", 10*time.Second, func() (bool, string) {
				got := status(t, admins[i], "Threads_connected")
				ok := got == last
				last = got
				return ok, fmt.Sprintf("Threads_connected %d", got)
			})
			threads0[i] = last
			aborted0[i] = status(t, admins[i], "Aborted_clients")
		}

		s, _ := openReplicaSet(t, pair, pair.Replicas, nil)
		replicaHealthy(t, s, replica.Name)
		var wg sync.WaitGroup
		var failed atomic.Int64
		for w := range 8 {
			wg.Go(func() {
				h := s.Handle([]string{"users", "orders"}[w%2])
				rctx := poolset.ReadYourWrites(ctx)
				for j := range 20 {
					id := 1000 + w*100 + j
					if _, err := h.ExecContext(rctx, "INSERT INTO users (id, name) VALUES (?, ?)", id, fmt.Sprintf("user-%d", id)); err != nil {
						failed.Add(1)
						t.Error(err)
						return
					}
					if _, err := readUser(rctx, h, id); err != nil {
						failed.Add(1)
						t.Errorf("read-your-writes read of user %d: %v", id, err)
						return
					}
					if _, err := readUser(ctx, h, j+1); err != nil {
						failed.Add(1)
						t.Errorf("read of user %d: %v", j+1, err)
						return
					}
				}
			})
		}
		wg.Wait()
		if failed.Load() > 0 {
			t.FailNow()
		}
		for i, srv := range servers {
			got := status(t, admins[i], "Threads_connected")
			t.Logf("%s: Threads_connected %d while the set is open (baseline %d)", srv.Name, got, threads0[i])
			if got <= threads0[i] {
				t.Errorf("%s: Threads_connected while open: got %d; want more than the baseline %d", srv.Name, got, threads0[i])
			}
		}
		t.Logf("before close:\n%s", s.Tree())

		if err := s.Close(ctx); err != nil {
			t.Fatalf("Close: %v", err)
		}
		for i, srv := range servers {
			replicaEventually(t, srv.Name+" Threads_connected back to the baseline", 10*time.Second, func() (bool, string) {
				got := status(t, admins[i], "Threads_connected")
				return got == threads0[i], fmt.Sprintf("got %d; want %d", got, threads0[i])
			})
			if got := status(t, admins[i], "Aborted_clients"); got != aborted0[i] {
				t.Errorf("%s: Aborted_clients: got %d; want %d (unchanged)", srv.Name, got, aborted0[i])
			}
		}
		if _, err := readUser(ctx, s.Handle("users"), 1); !errors.Is(err, poolset.ErrPoolClosed) {
			t.Errorf("read after close: got %v; want ErrPoolClosed", err)
		}
	})

	t.Run("stale reads and read-your-writes", func(t *testing.T) {
		ctx := t.Context()
		// The replica stays in the rotation with its SQL thread stopped only
		// without a health check: mysql.ReplicaCheck takes it out at once
		// (see "SQL thread stopped leaves the rotation"). The wait for the
		// replica to reach a write is raised from 100 ms so that a busy
		// machine does not send a caught-up read to the primary.
		s, _ := openReplicaSet(t, pair, pair.Replicas, func(c *poolset.Config) {
			c.Reads[0].Health = nil
			c.ReadYourWritesWait = time.Second
		})
		users := s.Handle("users")
		rywPrimary := func() int64 { return replicaRepo(t, s, "primary", "users").ReadYourWritesPrimary }
		rywReplica := func() int64 { return replicaRepo(t, s, replica.Name, "users").ReadYourWritesReplica }
		replicaQueries := func() int64 { return replicaRepo(t, s, replica.Name, "users").Queries }
		insert := func(ctx context.Context, id int) {
			t.Helper()
			if _, err := users.ExecContext(ctx, "INSERT INTO users (id, name) VALUES (?, ?)", id, fmt.Sprintf("user-%d", id)); err != nil {
				t.Fatalf("insert user %d: %v", id, err)
			}
		}
		// insertInTx inserts user id in a transaction of its own.
		insertInTx := func(ctx context.Context, id int) {
			t.Helper()
			tx, err := users.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tx.ExecContext(ctx, "INSERT INTO users (id, name) VALUES (?, ?)", id, fmt.Sprintf("user-%d", id)); err != nil {
				tx.Rollback()
				t.Fatal(err)
			}
			if err := tx.Commit(); err != nil {
				t.Fatal(err)
			}
		}
		wantUser := func(ctx context.Context, id int) {
			t.Helper()
			name, err := readUser(ctx, users, id)
			if err != nil || name != fmt.Sprintf("user-%d", id) {
				t.Fatalf("read user %d: got %q, %v; want user-%d", id, name, err, id)
			}
		}

		if err := replica.StopSQLThread(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { replica.StartSQLThread(context.Background()) })

		t.Run("plain read is stale", func(t *testing.T) {
			insert(ctx, 2001)
			q0 := replicaQueries()
			if _, err := readUser(ctx, users, 2001); !errors.Is(err, sql.ErrNoRows) {
				t.Errorf("plain read of a user just written: got %v; want sql.ErrNoRows (replica behind)", err)
			}
			if got := replicaQueries(); got != q0+1 {
				t.Errorf("users queries on %s: got %d; want %d", replica.Name, got, q0+1)
			}
		})
		t.Run("read-your-writes goes to the primary", func(t *testing.T) {
			rctx := poolset.ReadYourWrites(ctx)
			p0, r0 := rywPrimary(), rywReplica()
			insert(rctx, 2002)
			wantUser(rctx, 2002)
			if got := rywPrimary(); got != p0+1 {
				t.Errorf("ReadYourWritesPrimary: got %d; want %d", got, p0+1)
			}
			if got := rywReplica(); got != r0 {
				t.Errorf("ReadYourWritesReplica: got %d; want %d (unchanged)", got, r0)
			}
		})
		t.Run("transaction under read-your-writes", func(t *testing.T) {
			rctx := poolset.ReadYourWrites(ctx)
			p0 := rywPrimary()
			insertInTx(rctx, 2003)
			wantUser(rctx, 2003)
			if got := rywPrimary(); got != p0+1 {
				t.Errorf("ReadYourWritesPrimary: got %d; want %d", got, p0+1)
			}
		})

		// A token made in one request is read in another (a context of its
		// own) and by another set on the same servers (as another process
		// would): both see the write the replica has not applied.
		var token string
		t.Run("a token carries the write to another request and another set", func(t *testing.T) {
			wctx := poolset.ReadYourWrites(ctx)
			insert(wctx, 2006)
			token = s.Token(wctx)
			if token == "" {
				t.Fatal("token after a write: got empty")
			}
			if s.Token(poolset.ReadYourWrites(ctx)) != "" {
				t.Error("token of a context with no write: got one; want empty")
			}
			p0 := rywPrimary()
			rctx, err := s.ReadYourWritesToken(context.Background(), token)
			if err != nil {
				t.Fatal(err)
			}
			wantUser(rctx, 2006)
			if got := rywPrimary(); got != p0+1 {
				t.Errorf("ReadYourWritesPrimary: got %d; want %d (the replica is behind)", got, p0+1)
			}
			other, _ := openReplicaSet(t, pair, pair.Replicas, func(c *poolset.Config) { c.Reads[0].Health = nil })
			octx, err := other.ReadYourWritesToken(context.Background(), token)
			if err != nil {
				t.Fatalf("token in another set: %v", err)
			}
			if name, err := readUser(octx, other.Handle("users"), 2006); err != nil || name != "user-2006" {
				t.Errorf("read in another set: got %q, %v; want user-2006", name, err)
			}
			// And in another process: this test binary, run again.
			cmd := exec.Command(os.Args[0], "-test.run=^TestTokenReaderProcess$", "-test.count=1")
			cmd.Env = append(os.Environ(), "POOLSET_TOKEN_READER="+token,
				"POOLSET_TOKEN_PRIMARY="+pair.Primary.DSN("shop"), "POOLSET_TOKEN_REPLICA="+replica.DSN("shop"))
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(out), "read user-2006 ryw-primary 1") {
				t.Errorf("token read in another process: %v\n%s", err, out)
			}
			if _, err := readUser(ctx, other.Handle("users"), 2006); !errors.Is(err, sql.ErrNoRows) {
				t.Errorf("plain read in another set: got %v; want sql.ErrNoRows (the replica is behind, so the token made the difference)", err)
			}
			for _, bad := range []string{"nonsense", "rw1.!!!", token[:len(token)-2], token + "AA", "rw1." + token[5:]} {
				if _, err := s.ReadYourWritesToken(ctx, bad); !errors.Is(err, poolset.ErrBadToken) {
					t.Errorf("token %q: got %v; want ErrBadToken", bad, err)
				}
			}
			foreign := openSQLite(t, poolset.Config{})
			if _, err := foreign.ReadYourWritesToken(ctx, token); !errors.Is(err, poolset.ErrBadToken) || !strings.Contains(err.Error(), "another primary") {
				t.Errorf("token on a set of another primary: got %v; want ErrBadToken naming another primary", err)
			}
		})

		if err := replica.StartSQLThread(ctx); err != nil {
			t.Fatal(err)
		}
		replicaCaughtUp(t, pair, replica)

		t.Run("a token read on a caught-up replica", func(t *testing.T) {
			r0 := rywReplica()
			rctx, err := s.ReadYourWritesToken(context.Background(), token)
			if err != nil {
				t.Fatal(err)
			}
			wantUser(rctx, 2006)
			if got := rywReplica(); got != r0+1 {
				t.Errorf("ReadYourWritesReplica: got %d; want %d", got, r0+1)
			}
		})

		t.Run("caught-up replica serves read-your-writes", func(t *testing.T) {
			wantUser(ctx, 2001) // no longer stale
			rctx := poolset.ReadYourWrites(ctx)
			p0, r0 := rywPrimary(), rywReplica()
			insert(rctx, 2004)
			wantUser(rctx, 2004)
			if got := rywReplica(); got != r0+1 {
				t.Errorf("ReadYourWritesReplica: got %d; want %d", got, r0+1)
			}
			if got := rywPrimary(); got != p0 {
				t.Errorf("ReadYourWritesPrimary: got %d; want %d (unchanged)", got, p0)
			}
		})
		t.Run("caught-up replica serves a transaction's read-your-writes", func(t *testing.T) {
			rctx := poolset.ReadYourWrites(ctx)
			p0, r0 := rywPrimary(), rywReplica()
			insertInTx(rctx, 2005)
			wantUser(rctx, 2005)
			if got := rywReplica(); got != r0+1 {
				t.Errorf("ReadYourWritesReplica: got %d; want %d", got, r0+1)
			}
			if got := rywPrimary(); got != p0 {
				t.Errorf("ReadYourWritesPrimary: got %d; want %d (unchanged)", got, p0)
			}
		})
		t.Logf("\n%s", s.Tree())
	})

	t.Run("write through a reader", func(t *testing.T) {
		ctx := t.Context()
		s, _ := openReplicaSet(t, pair, pair.Replicas, nil)
		replicaHealthy(t, s, replica.Name)
		users := s.Handle("users")

		t.Run("query", func(t *testing.T) {
			rows, err := users.Read().QueryContext(ctx, "INSERT INTO users (id, name) VALUES (3001, 'mallory')")
			if err == nil {
				rows.Close()
			}
			if !mysql.IsReadOnly(err) {
				t.Errorf("INSERT through Read().QueryContext: got %v; want a read-only error", err)
			}
		})
		t.Run("transaction", func(t *testing.T) {
			tx, err := users.Read().BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			_, err = tx.ExecContext(ctx, "INSERT INTO users (id, name) VALUES (3002, 'mallory')")
			if rerr := tx.Rollback(); rerr != nil {
				t.Errorf("rollback: %v", rerr)
			}
			if !mysql.IsReadOnly(err) {
				t.Errorf("INSERT in a Read().BeginTx transaction: got %v; want a read-only error", err)
			}
		})
		// One query, one statement in the transaction.
		if got := replicaRepo(t, s, replica.Name, "users").Queries; got != 2 {
			t.Errorf("users queries on %s: got %d; want 2", replica.Name, got)
		}
		if got := replicaRepo(t, s, "primary", "users"); got.Fallbacks != 0 || got.Queries != 0 {
			t.Errorf("users on the primary: got %d fallbacks, %d queries; want 0, 0 (a refused write is not retried there)", got.Fallbacks, got.Queries)
		}
		replicaCaughtUp(t, pair, replica)
		for _, srv := range []*poolsettest.Instance{pair.Primary, replica} {
			if got := countUsers(t, replicaServerDB(t, srv.DSN("shop")), 3001, 3002); got != 0 {
				t.Errorf("rows written through a reader on %s: got %d; want 0", srv.Name, got)
			}
		}
	})

	t.Run("write through a reader with the replica out of the rotation", func(t *testing.T) {
		ctx := t.Context()
		s, _ := openReplicaSet(t, pair, pair.Replicas, nil)
		replicaHealthy(t, s, replica.Name)
		users := s.Handle("users")
		if err := replica.StopSQLThread(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { replica.StartSQLThread(context.Background()) })
		replicaUnhealthy(t, s, replica.Name)

		rows, err := users.Read().QueryContext(ctx, "INSERT INTO users (id, name) VALUES (3003, 'mallory')")
		if err == nil {
			rows.Close()
		}
		written := countUsers(t, replicaServerDB(t, pair.Primary.DSN("shop")), 3003)
		if err == nil && written == 1 {
			t.Errorf("with no read pool usable, Read().QueryContext(INSERT) fell back to a read-write session on the primary and wrote user 3003 there (users on the primary: %+v)",
				replicaRepo(t, s, "primary", "users"))
		}
		if err == nil {
			t.Errorf("INSERT through Read().QueryContext with no read pool usable: got no error; want one")
		}
		if written != 0 {
			t.Errorf("rows written through a reader on the primary: got %d; want 0", written)
		}
	})

	t.Run("SQL thread stopped leaves the rotation", func(t *testing.T) {
		ctx := t.Context()
		s, logs := openReplicaSet(t, pair, pair.Replicas, nil)
		replicaHealthy(t, s, replica.Name)
		users := s.Handle("users")

		if err := replica.StopSQLThread(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { replica.StartSQLThread(context.Background()) })
		stopped := time.Now()
		// Writes keep coming on the primary while the replica applies none.
		id := 4000
		replicaEventually(t, replica.Name+" out of the rotation", replicaLeaveBound, func() (bool, string) {
			id++
			if _, err := users.ExecContext(ctx, "INSERT INTO users (id, name) VALUES (?, ?)", id, fmt.Sprintf("user-%d", id)); err != nil {
				t.Fatal(err)
			}
			st := replicaPool(t, s, replica.Name)
			return !st.Healthy, fmt.Sprintf("healthy %v, unhealthy %q", st.Healthy, st.Unhealthy)
		})
		t.Logf("left the rotation %v after STOP SLAVE SQL_THREAD, %d writes on the primary", replicaSince(stopped), id-4000)
		st := replicaPool(t, s, replica.Name)
		if !strings.Contains(st.Unhealthy, "SQL thread") {
			t.Errorf("Unhealthy: got %q; want it to name the SQL thread", st.Unhealthy)
		}
		if st.Leaves != 1 || st.Rejoins != 0 {
			t.Errorf("leaves, rejoins: got %d, %d; want 1, 0", st.Leaves, st.Rejoins)
		}
		if !strings.Contains(logs.String(), "out of the rotation") {
			t.Errorf("log lacks the move out of the rotation:\n%s", logs)
		}
		// Out of the rotation, reads are current again: they go to the primary.
		f0 := replicaRepo(t, s, "primary", "users").Fallbacks
		if name, err := readUser(ctx, users, id); err != nil || name != fmt.Sprintf("user-%d", id) {
			t.Errorf("read of the last user written: got %q, %v; want user-%d", name, err, id)
		}
		if got := replicaRepo(t, s, "primary", "users").Fallbacks; got != f0+1 {
			t.Errorf("users fallbacks on the primary: got %d; want %d", got, f0+1)
		}

		if err := replica.StartSQLThread(ctx); err != nil {
			t.Fatal(err)
		}
		reasons := map[string]bool{}
		replicaEventually(t, replica.Name+" back in the rotation", replicaRejoinBound, func() (bool, string) {
			st := replicaPool(t, s, replica.Name)
			if st.Unhealthy != "" {
				reasons[st.Unhealthy] = true
			}
			return st.Healthy, fmt.Sprintf("healthy %v, unhealthy %q", st.Healthy, st.Unhealthy)
		})
		t.Logf("reasons seen while out of the rotation: %v", reasons)
		st = replicaPool(t, s, replica.Name)
		if st.Leaves != 1 || st.Rejoins != 1 {
			t.Errorf("leaves, rejoins: got %d, %d; want 1, 1", st.Leaves, st.Rejoins)
		}
		replicaCaughtUp(t, pair, replica)
		q0 := replicaRepo(t, s, replica.Name, "users").Queries
		if name, err := readUser(ctx, users, id); err != nil || name != fmt.Sprintf("user-%d", id) {
			t.Errorf("read of the last user written after the rejoin: got %q, %v; want user-%d", name, err, id)
		}
		if got := replicaRepo(t, s, replica.Name, "users").Queries; got != q0+1 {
			t.Errorf("users queries on %s after the rejoin: got %d; want %d", replica.Name, got, q0+1)
		}
	})

	// A replica whose SQL thread is held behind a lock, while
	// Seconds_Behind_Master reads 0 (the primary's clock runs ahead of the
	// replica's, here by writing with a timestamp an hour ahead), leaves
	// the rotation on its GTID positions under a sub-second --max-lag,
	// and comes back once it has applied what it received. A check on
	// Seconds_Behind_Master alone would keep it in.
	t.Run("behind on GTID position while Seconds_Behind_Master reads 0", func(t *testing.T) {
		ctx := t.Context()
		const maxLag = 500 * time.Millisecond
		s, logs := openReplicaSet(t, pair, pair.Replicas, func(cfg *poolset.Config) {
			cfg.Reads[0].Health = mysql.NewReplicaCheck(maxLag)
		})
		replicaHealthy(t, s, replica.Name)
		leaves0 := replicaPool(t, s, replica.Name).Leaves

		lock := replicaServerDB(t, replica.DSN("shop"))
		lockConn, err := lock.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer lockConn.Close()
		if _, err := lockConn.ExecContext(ctx, "LOCK TABLES users READ"); err != nil {
			t.Fatal(err)
		}
		unlocked := false
		unlock := func() {
			if !unlocked {
				unlocked = true
				if _, err := lockConn.ExecContext(context.Background(), "UNLOCK TABLES"); err != nil {
					t.Error(err)
				}
			}
		}
		defer unlock()

		primary := replicaServerDB(t, pair.Primary.DSN("shop"))
		if _, err := primary.ExecContext(ctx, "SET timestamp = UNIX_TIMESTAMP() + 3600"); err != nil {
			t.Fatal(err)
		}
		const id = 5001
		if _, err := primary.ExecContext(ctx, "INSERT INTO users (id, name) VALUES (?, 'user-5001')", id); err != nil {
			t.Fatal(err)
		}
		admin := replicaServerDB(t, replica.DSN("shop"))
		// Out on its GTID positions (a check slow for another reason would
		// take it out too, with another reason).
		replicaEventually(t, replica.Name+" out of the rotation on its GTID positions", replicaLeaveBound, func() (bool, string) {
			st := replicaPool(t, s, replica.Name)
			return !st.Healthy && strings.Contains(st.Unhealthy, "received"), fmt.Sprintf("healthy %v, unhealthy %q", st.Healthy, st.Unhealthy)
		})
		st := replicaPool(t, s, replica.Name)
		status, err := replica.ReplicaStatus(ctx)
		if err != nil {
			t.Fatal(err)
		}
		sbm := status["Seconds_Behind_Master"]
		t.Logf("out of the rotation: %q; Seconds_Behind_Master %s", st.Unhealthy, sbm)
		if sbm != "0" {
			t.Errorf("Seconds_Behind_Master: got %s; want 0 (the test's premise)", sbm)
		}
		if !strings.Contains(st.Unhealthy, "received") || !strings.Contains(st.Unhealthy, "applied") {
			t.Errorf("Unhealthy: got %q; want the GTID positions received and applied", st.Unhealthy)
		}
		if st.Leaves < leaves0+1 {
			t.Errorf("leaves: got %d; want at least %d", st.Leaves, leaves0+1)
		}
		if !st.LagKnown || st.Lag <= maxLag {
			t.Errorf("lag in the stats: got %s (known %v); want over %s", st.Lag, st.LagKnown, maxLag)
		}
		if tree := s.Tree(); !strings.Contains(tree, ", lag ") {
			t.Errorf("tree lacks the replica's lag:\n%s", tree)
		}
		if n := countUsers(t, admin, id); n != 0 {
			t.Fatalf("the replica applied the row behind the lock: got %d rows; want 0", n)
		}
		// Meanwhile reads of that user go to the primary and see it.
		if name, err := readUser(ctx, s.Handle("users"), id); err != nil || name != "user-5001" {
			t.Errorf("read while the replica is behind: got %q, %v; want user-5001", name, err)
		}

		unlock()
		replicaHealthy(t, s, replica.Name)
		if st := replicaPool(t, s, replica.Name); !st.LagKnown || st.Lag > maxLag {
			t.Errorf("lag in the stats after the rejoin: got %s (known %v); want at most %s", st.Lag, st.LagKnown, maxLag)
		}
		if n := countUsers(t, admin, id); n != 1 {
			t.Errorf("rows on the replica after the rejoin: got %d; want 1", n)
		}
		if !strings.Contains(logs.String(), "out of the rotation") {
			t.Errorf("log lacks the move out of the rotation:\n%s", logs)
		}
	})
}

// TestReplicaFailover kills and restarts the replica of a primary and one
// replica under reads, and opens a set while the replica is down.
func TestReplicaFailover(t *testing.T) {
	pair := replicaPair(t, 1)
	replica := pair.Replicas[0]

	t.Run("killed mid-load", func(t *testing.T) {
		replicaRunning(t, pair, replica)
		s, _ := openReplicaSet(t, pair, pair.Replicas, nil)
		replicaHealthy(t, s, replica.Name)
		users := s.Handle("users")
		load := startReplicaLoad(t, users, 8)
		replicaEventually(t, "reads served by "+replica.Name, 10*time.Second, func() (bool, string) {
			q := replicaRepo(t, s, replica.Name, "users").Queries
			return q >= 100, fmt.Sprintf("%d queries", q)
		})

		killed := time.Now()
		if err := replica.Kill(); err != nil {
			t.Fatal(err)
		}
		replicaUnhealthy(t, s, replica.Name)
		t.Logf("%s left the rotation %v after SIGKILL", replica.Name, replicaSince(killed))
		q0 := replicaRepo(t, s, "primary", "users").Queries
		replicaEventually(t, "reads served by the primary", 10*time.Second, func() (bool, string) {
			q := replicaRepo(t, s, "primary", "users").Queries
			return q >= q0+100, fmt.Sprintf("%d queries", q)
		})
		st := replicaPool(t, s, replica.Name)
		if st.Healthy || st.Leaves < 1 || st.Unhealthy == "" {
			t.Errorf("%s after the kill: got healthy %v, leaves %d, unhealthy %q; want false, >= 1, a reason", replica.Name, st.Healthy, st.Leaves, st.Unhealthy)
		}
		fallbacks := replicaRepo(t, s, "primary", "users").Fallbacks
		if fallbacks == 0 {
			t.Error("users fallbacks on the primary: got 0; want > 0")
		}
		t.Logf("after the kill: %d fallbacks, %d failed reads so far, unhealthy %q", fallbacks, load.errs.Load(), st.Unhealthy)

		restart := time.Now()
		if err := replica.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s restarted in %v", replica.Name, replicaSince(restart))
		q1 := replicaRepo(t, s, replica.Name, "users").Queries
		replicaEventually(t, replica.Name+" back in the rotation serving reads", replicaRejoinBound, func() (bool, string) {
			st := replicaPool(t, s, replica.Name)
			q := replicaRepo(t, s, replica.Name, "users").Queries
			return st.Healthy && q > q1+10, fmt.Sprintf("healthy %v, unhealthy %q, %d queries (%d at restart)", st.Healthy, st.Unhealthy, q, q1)
		})
		t.Logf("%s serving reads again %v after Start returned", replica.Name, replicaSince(restart))
		load.check(t)
		st = replicaPool(t, s, replica.Name)
		if st.Rejoins < 1 {
			t.Errorf("%s rejoins: got %d; want >= 1", replica.Name, st.Rejoins)
		}
		t.Logf("leaves %d, rejoins %d, fallbacks %d\n%s", st.Leaves, st.Rejoins, replicaRepo(t, s, "primary", "users").Fallbacks, s.Tree())
	})

	t.Run("FailWithoutReadPool with the replica killed", func(t *testing.T) {
		ctx := t.Context()
		replicaRunning(t, pair, replica)
		s, _ := openReplicaSet(t, pair, pair.Replicas, nil)
		replicaHealthy(t, s, replica.Name)
		reports := s.HandleWithPolicy("reports", poolset.FailWithoutReadPool)
		if _, err := readUser(ctx, reports, 1); err != nil {
			t.Fatalf("read with the replica up: %v", err)
		}
		if err := replica.Kill(); err != nil {
			t.Fatal(err)
		}
		replicaUnhealthy(t, s, replica.Name)

		const n = 5
		for i := range n {
			if _, err := readUser(ctx, reports, i+1); !errors.Is(err, poolset.ErrNoReadPool) {
				t.Errorf("QueryRowContext %d: got %v; want ErrNoReadPool", i, err)
			}
		}
		rows, err := reports.Read().QueryContext(ctx, "SELECT id FROM users")
		if err == nil {
			rows.Close()
		}
		if !errors.Is(err, poolset.ErrNoReadPool) {
			t.Errorf("QueryContext: got %v; want ErrNoReadPool", err)
		}
		tx, err := reports.Read().BeginTx(ctx, nil)
		if err == nil {
			tx.Rollback()
		}
		if !errors.Is(err, poolset.ErrNoReadPool) {
			t.Errorf("BeginTx: got %v; want ErrNoReadPool", err)
		}
		got := replicaRepo(t, s, "primary", "reports")
		if got.FallbackFailures != n+2 || got.Fallbacks != 0 || got.Queries != 0 {
			t.Errorf("reports on the primary: got %d fallback failures, %d fallbacks, %d queries; want %d, 0, 0", got.FallbackFailures, got.Fallbacks, got.Queries, n+2)
		}
		if got := replicaRepo(t, s, replica.Name, "reports").Queries; got != 1 {
			t.Errorf("reports queries on %s: got %d; want 1 (before the kill)", replica.Name, got)
		}
	})

	// A replica that hangs (SIGSTOP) while more readers than MaxOpen use
	// it: every connection of its pool is stuck in a read, so the health
	// check cannot get one either.
	t.Run("frozen with every connection busy", func(t *testing.T) {
		replicaRunning(t, pair, replica)
		s, _ := openReplicaSet(t, pair, pair.Replicas, nil)
		replicaHealthy(t, s, replica.Name)
		users := s.Handle("users")
		b, err := os.ReadFile(filepath.Join(replica.Dir, "mariadbd.pid"))
		if err != nil {
			t.Fatal(err)
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			t.Fatal(err)
		}
		maxOpen := replicaPool(t, s, replica.Name).MaxOpen
		load := startReplicaLoad(t, users, maxOpen+2)
		replicaEventually(t, "reads served by "+replica.Name, 10*time.Second, func() (bool, string) {
			q := replicaRepo(t, s, replica.Name, "users").Queries
			return q >= 100, fmt.Sprintf("%d queries", q)
		})
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		resumed := false
		resume := func() {
			if !resumed {
				resumed = true
				syscall.Kill(pid, syscall.SIGCONT)
			}
		}
		t.Cleanup(resume)
		frozen := time.Now()
		var st poolset.PoolStats
		for time.Since(frozen) < 5*time.Second {
			if st = replicaPool(t, s, replica.Name); !st.Healthy {
				break
			}
			time.Sleep(replicaPollEvery)
		}
		t.Logf("%s %v after SIGSTOP: healthy %v, in use %d/%d, waiting %d, unhealthy %q; %d reads, %d failed, %d fallbacks",
			replica.Name, replicaSince(frozen), st.Healthy, st.InUse, st.MaxOpen, st.Waiting, st.Unhealthy,
			load.reads.Load(), load.errs.Load(), replicaRepo(t, s, "primary", "users").Fallbacks)
		resume()
		load.halt()
		if st.Healthy {
			t.Errorf("%s hung with %d/%d connections in use stayed in the rotation for %v; want it out (its health check has a connection of its own)",
				replica.Name, st.InUse, st.MaxOpen, replicaSince(frozen))
		}
	})

	t.Run("down at open", func(t *testing.T) {
		ctx := t.Context()
		if err := replica.Kill(); err != nil {
			t.Fatal(err)
		}
		s, logs := openReplicaSet(t, pair, pair.Replicas, nil)
		if out := logs.String(); !strings.Contains(out, "unusable at start") || !strings.Contains(out, "pool="+replica.Name) {
			t.Errorf("log: got %q; want a warning that %s is unusable at start", out, replica.Name)
		}
		st := replicaPool(t, s, replica.Name)
		if st.Healthy || st.Unhealthy == "" {
			t.Errorf("%s at open: got healthy %v, unhealthy %q; want false and a reason", replica.Name, st.Healthy, st.Unhealthy)
		}
		t.Logf("%s at open: unhealthy %q, leaves %d", replica.Name, st.Unhealthy, st.Leaves)
		users := s.Handle("users")
		const n = 10
		for i := range n {
			if name, err := readUser(ctx, users, i+1); err != nil || name != fmt.Sprintf("user-%d", i+1) {
				t.Fatalf("read %d with the replica down: got %q, %v", i, name, err)
			}
		}
		if got := replicaRepo(t, s, "primary", "users"); got.Fallbacks != n || got.Queries != n {
			t.Errorf("users on the primary: got %d fallbacks, %d queries; want %d, %d", got.Fallbacks, got.Queries, n, n)
		}
		if got := replicaRepo(t, s, replica.Name, "users").Queries; got != 0 {
			t.Errorf("users queries on %s: got %d; want 0", replica.Name, got)
		}

		restart := time.Now()
		if err := replica.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s restarted in %v", replica.Name, replicaSince(restart))
		replicaHealthy(t, s, replica.Name)
		replicaEventually(t, "reads served by "+replica.Name, replicaRejoinBound, func() (bool, string) {
			if _, err := readUser(ctx, users, 1); err != nil {
				t.Fatal(err)
			}
			q := replicaRepo(t, s, replica.Name, "users").Queries
			return q > 0, fmt.Sprintf("%d queries", q)
		})
		t.Logf("%s serving reads %v after Start returned", replica.Name, replicaSince(restart))
		if st := replicaPool(t, s, replica.Name); st.Rejoins != 1 {
			t.Errorf("%s rejoins: got %d; want 1", replica.Name, st.Rejoins)
		}
	})
}

// TestReplicaTwoReplicas spreads reads over two replicas and stops one.
func TestReplicaTwoReplicas(t *testing.T) {
	pair := replicaPair(t, 2)
	r1, r2 := pair.Replicas[0], pair.Replicas[1]
	s, _ := openReplicaSet(t, pair, pair.Replicas, nil)
	replicaHealthy(t, s, r1.Name)
	replicaHealthy(t, s, r2.Name)
	users := s.Handle("users")
	queries := func(r *poolsettest.Instance) int64 { return replicaRepo(t, s, r.Name, "users").Queries }

	load := startReplicaLoad(t, users, 8)
	replicaEventually(t, "reads spread over both replicas", 10*time.Second, func() (bool, string) {
		q1, q2 := queries(r1), queries(r2)
		return q1 >= 50 && q2 >= 50, fmt.Sprintf("%s %d, %s %d", r1.Name, q1, r2.Name, q2)
	})

	stop := time.Now()
	if err := r2.Stop(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s stopped in %v", r2.Name, replicaSince(stop))
	replicaUnhealthy(t, s, r2.Name)
	t.Logf("%s out of the rotation %v after SIGTERM", r2.Name, replicaSince(stop))
	replicaEventually(t, r2.Name+" holds no connection", 10*time.Second, func() (bool, string) {
		st := replicaPool(t, s, r2.Name)
		return st.InUse == 0, fmt.Sprintf("in use %d", st.InUse)
	})
	q1, q2 := queries(r1), queries(r2)
	replicaEventually(t, "reads served by "+r1.Name, 10*time.Second, func() (bool, string) {
		q := queries(r1)
		return q >= q1+200, fmt.Sprintf("%s %d queries (%d when %s left)", r1.Name, q, q1, r2.Name)
	})
	if got := queries(r2); got != q2 {
		t.Errorf("%s queries after it left the rotation: got %d; want %d (unchanged)", r2.Name, got, q2)
	}
	load.check(t)
	st := replicaPool(t, s, r2.Name)
	if st.Healthy || st.Leaves != 1 {
		t.Errorf("%s: got healthy %v, leaves %d; want false, 1", r2.Name, st.Healthy, st.Leaves)
	}
	if st := replicaPool(t, s, r1.Name); !st.Healthy || st.Leaves != 0 {
		t.Errorf("%s: got healthy %v, leaves %d; want true, 0", r1.Name, st.Healthy, st.Leaves)
	}
	t.Logf("fallbacks to the primary while %s left: %d; unhealthy %q\n%s", r2.Name, replicaRepo(t, s, "primary", "users").Fallbacks, st.Unhealthy, s.Tree())
}

// TestTokenReaderProcess is the other process of the token test: it runs
// only with POOLSET_TOKEN_READER set, opens a set of its own on the pair,
// reads user 2006 under the token and prints what it read and where.
func TestTokenReaderProcess(t *testing.T) {
	token := os.Getenv("POOLSET_TOKEN_READER")
	if token == "" {
		t.Skip("run by the token test as another process")
	}
	ctx := context.Background()
	primary, err := mysql.Primary(os.Getenv("POOLSET_TOKEN_PRIMARY"))
	if err != nil {
		t.Fatal(err)
	}
	read, err := mysql.Replica(os.Getenv("POOLSET_TOKEN_REPLICA"), 0)
	if err != nil {
		t.Fatal(err)
	}
	read.Health = nil
	s, err := poolset.Open(ctx, poolset.Config{Primary: primary, Reads: []poolset.PoolConfig{read}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	rctx, err := s.ReadYourWritesToken(ctx, token)
	if err != nil {
		t.Fatal(err)
	}
	name, err := readUser(rctx, s.Handle("users"), 2006)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("read %s ryw-primary %d\n", name, repoStats(t, s.Primary().Stats(), "users").ReadYourWritesPrimary)
}
