package postgres_test

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/poolset/poolset"
	"github.com/poolset/poolset/poolsettest"
	"github.com/poolset/poolset/postgres"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver, for openDB
)

// Helpers of the tests that run sets on a pair of the tests' own
// (poolsettest.PostgresPair): a primary with streaming standbys, shared by
// the subtests of one top-level test in sequence.

// seedUsers is how many users standbyPair writes: ids 1..100, named
// user-ID.
const seedUsers = 100

// Bounds of the polling loops: limits after which a test fails, not
// expectations; the tests log the time each wait took.
const (
	pollEvery   = 20 * time.Millisecond
	leaveBound  = 10 * time.Second
	rejoinBound = 20 * time.Second
	loadBound   = 60 * time.Second
)

// standbyPair starts a primary with n standbys of database shop, creates
// table users with seedUsers rows, and waits until every standby has them.
func standbyPair(t *testing.T, n int) *poolsettest.PGPair {
	t.Helper()
	start := time.Now()
	pair := poolsettest.PostgresPair(t, "shop", n)
	t.Logf("PostgresPair with %d standby(s) took %v", n, time.Since(start).Round(time.Millisecond))
	ctx := t.Context()
	db := openDB(t, pair.Primary.DSN("shop"))
	if _, err := db.ExecContext(ctx, `CREATE TABLE users (id bigint PRIMARY KEY, name text NOT NULL);
		INSERT INTO users SELECT g, 'user-' || g FROM generate_series(1, 100) g`); err != nil {
		t.Fatal(err)
	}
	for _, s := range pair.Standbys {
		caughtUp(t, pair, s)
	}
	return pair
}

// openDB opens a plain *sql.DB of one connection on dsn, outside any set,
// and closes it at the end of the test.
func openDB(t *testing.T, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	return db
}

// caughtUp waits up to 20 s for s to replay everything the primary has
// written so far.
func caughtUp(t *testing.T, pair *poolsettest.PGPair, s *poolsettest.PGInstance) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := pair.WaitCaughtUp(ctx, s); err != nil {
		t.Fatal(err)
	}
}

// openSet opens a set on database shop with pair's primary and the given
// standbys as read pools (named after the instances), as postgres.Primary
// and postgres.Standby build them with maxLag, after edit changes the
// config. It closes the set at the end of the test.
func openSet(t *testing.T, pair *poolsettest.PGPair, reads []*poolsettest.PGInstance, maxLag time.Duration, edit func(*poolset.Config)) *poolset.Set {
	t.Helper()
	primary, err := postgres.Primary(pair.Primary.DSN("shop"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := poolset.Config{Primary: primary}
	for _, r := range reads {
		rc, err := postgres.Standby(r.DSN("shop"), maxLag)
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
	return s
}

// poolOf returns the stats of s's pool name.
func poolOf(t *testing.T, s *poolset.Set, name string) poolset.PoolStats {
	t.Helper()
	for _, st := range s.Stats() {
		if st.Name == name {
			return st
		}
	}
	t.Fatalf("no pool %s in the set", name)
	return poolset.PoolStats{}
}

// repoOf returns repo's stats on s's pool, zero when repo has not used it.
func repoOf(t *testing.T, s *poolset.Set, pool, repo string) poolset.RepoStats {
	t.Helper()
	for _, r := range poolOf(t, s, pool).Repos {
		if r.Repo == repo {
			return r
		}
	}
	return poolset.RepoStats{Repo: repo}
}

// eventually calls cond every 20 ms until it reports true, and fails t if
// that takes longer than bound. It logs and returns the time it took.
func eventually(t *testing.T, what string, bound time.Duration, cond func() (bool, string)) time.Duration {
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
		time.Sleep(pollEvery)
	}
}

// inRotation waits until s's pool name is in the rotation (want true) or
// out of it, and returns how many health intervals (250 ms) that took.
func inRotation(t *testing.T, s *poolset.Set, name string, want bool) float64 {
	t.Helper()
	what, bound := name+" out of the rotation", leaveBound
	if want {
		what, bound = name+" in the rotation", rejoinBound
	}
	d := eventually(t, what, bound, func() (bool, string) {
		st := poolOf(t, s, name)
		return st.Healthy == want, fmt.Sprintf("healthy %v, unhealthy %q, leaves %d, rejoins %d", st.Healthy, st.Unhealthy, st.Leaves, st.Rejoins)
	})
	return float64(d) / float64(poolset.DefaultHealthInterval)
}

// readUser reads user id's name through h's Reader.
func readUser(ctx context.Context, h *poolset.Handle, id int) (string, error) {
	var name string
	err := h.Read().QueryRowContext(ctx, "SELECT name FROM users WHERE id = $1", id).Scan(&name)
	return name, err
}

// readLoad is goroutines reading seeded users through a Reader in a loop,
// until halt or loadBound.
type readLoad struct {
	reads, errs atomic.Int64
	stop        chan struct{}
	once        sync.Once
	wg          sync.WaitGroup

	mu    sync.Mutex
	first []error
}

func startLoad(t *testing.T, h *poolset.Handle, workers int) *readLoad {
	l := &readLoad{stop: make(chan struct{})}
	deadline := time.Now().Add(loadBound)
	for w := range workers {
		l.wg.Go(func() {
			for i := 0; time.Now().Before(deadline); i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				id := (w*37+i)%seedUsers + 1
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				name, err := readUser(ctx, h, id)
				cancel()
				if err == nil && name != fmt.Sprintf("user-%d", id) {
					err = fmt.Errorf("user %d: got name %q", id, name)
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

func (l *readLoad) halt() {
	l.once.Do(func() { close(l.stop) })
	l.wg.Wait()
}

// check halts the load and fails t if any read failed or none ran.
func (l *readLoad) check(t *testing.T) {
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
