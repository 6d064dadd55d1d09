package compat_test

import (
	"context"
	"testing"

	"go.uber.org/goleak"

	"github.com/poolset/poolset"
	"github.com/poolset/poolset/mysql"
	"github.com/poolset/poolset/poolsettest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// openSet creates database name on the test MariaDB and opens a set on it
// with a primary pool and a read-only pool on the same server. The set is
// closed when t ends.
func openSet(t *testing.T, name string) *poolset.Set {
	t.Helper()
	dsn := poolsettest.MySQLDatabase(t, name)
	primary, err := mysql.Primary(dsn)
	if err != nil {
		t.Fatal(err)
	}
	read, err := mysql.Replica(dsn, 0)
	if err != nil {
		t.Fatal(err)
	}
	s, err := poolset.Open(t.Context(), poolset.Config{Primary: primary, Reads: []poolset.PoolConfig{read}})
	if err != nil {
		t.Fatalf("poolset.Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(context.Background()); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// repo returns repository name's figures on pool st, or the zero figures
// when the repository has not used the pool.
func repo(st poolset.PoolStats, name string) poolset.RepoStats {
	for _, r := range st.Repos {
		if r.Repo == name {
			return r
		}
	}
	return poolset.RepoStats{Repo: name}
}

// counts is one repository's queries and transactions on one pool.
type counts struct{ Queries, Txs int64 }

// figures returns name's queries and transactions on the primary and on
// the (only) read pool of s.
func figures(s *poolset.Set, name string) (primary, read counts) {
	p := repo(s.Primary().Stats(), name)
	r := repo(s.Reads()[0].Stats(), name)
	return counts{p.Queries, p.Txs}, counts{r.Queries, r.Txs}
}

// idle fails t unless no connection of s is in use, on any pool or by any
// repository, and none was reported leaked.
func idle(t *testing.T, s *poolset.Set) {
	t.Helper()
	for _, st := range s.Stats() {
		if st.InUse != 0 {
			t.Errorf("pool %s: in use %d; want 0", st.Name, st.InUse)
		}
		for _, r := range st.Repos {
			if r.InUse != 0 || r.Leaks != 0 {
				t.Errorf("pool %s, repo %s: in use %d, leaks %d; want 0, 0", st.Name, r.Repo, r.InUse, r.Leaks)
			}
		}
	}
}
