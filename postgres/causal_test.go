package postgres_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/poolset/poolset"
	"github.com/poolset/poolset/postgres"
)

// TestStandbyReadYourWrites runs a set on a primary and a standby whose
// replay is paused, then resumed: plain reads are stale, reads under
// ReadYourWrites (in the same context, after a transaction, or carried by
// a token to another context and another set) wait on the standby for the
// write's WAL position and then go to the primary; once the standby has
// replayed, it serves them; each outcome is counted. A write sent to the
// standby's read pool fails and writes nothing.
func TestStandbyReadYourWrites(t *testing.T) {
	pair := standbyPair(t, 1)
	standby := pair.Standbys[0]
	ctx := t.Context()
	// The standby stays in the rotation with its replay paused only under
	// a max lag longer than the test (TestStandbyRotation takes it out at
	// 1 s). The wait is raised from 100 ms so that a busy machine does not
	// send a caught-up read to the primary.
	open := func() *poolset.Set {
		return openSet(t, pair, pair.Standbys, time.Hour, func(c *poolset.Config) { c.ReadYourWritesWait = time.Second })
	}
	s := open()
	inRotation(t, s, standby.Name, true)
	users := s.Handle("users")
	rywPrimary := func() int64 { return repoOf(t, s, "primary", "users").ReadYourWritesPrimary }
	rywStandby := func() int64 { return repoOf(t, s, standby.Name, "users").ReadYourWritesReplica }
	insert := func(ctx context.Context, id int) {
		t.Helper()
		if _, err := users.ExecContext(ctx, "INSERT INTO users VALUES ($1, $2)", id, fmt.Sprintf("user-%d", id)); err != nil {
			t.Fatalf("insert user %d: %v", id, err)
		}
	}
	insertInTx := func(ctx context.Context, id int) {
		t.Helper()
		tx, err := users.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO users VALUES ($1, $2)", id, fmt.Sprintf("user-%d", id)); err != nil {
			tx.Rollback()
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	wantUser := func(ctx context.Context, h *poolset.Handle, id int) {
		t.Helper()
		if name, err := readUser(ctx, h, id); err != nil || name != fmt.Sprintf("user-%d", id) {
			t.Fatalf("read user %d: got %q, %v; want user-%d", id, name, err, id)
		}
	}
	// counts checks how the reads under read-your-writes went since
	// primary0 and standby0.
	counts := func(primary0, standby0, wantPrimary, wantStandby int64) {
		t.Helper()
		if p, r := rywPrimary()-primary0, rywStandby()-standby0; p != wantPrimary || r != wantStandby {
			t.Errorf("read-your-writes reads: got %d on the primary, %d on %s; want %d, %d", p, r, standby.Name, wantPrimary, wantStandby)
		}
	}

	if err := standby.PauseReplay(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { standby.ResumeReplay(context.Background()) })

	t.Run("plain read is stale", func(t *testing.T) {
		insert(ctx, 2001)
		q0 := repoOf(t, s, standby.Name, "users").Queries
		if _, err := readUser(ctx, users, 2001); !errors.Is(err, sql.ErrNoRows) {
			t.Errorf("plain read of a user just written: got %v; want sql.ErrNoRows (replay paused)", err)
		}
		if got := repoOf(t, s, standby.Name, "users").Queries; got != q0+1 {
			t.Errorf("users queries on %s: got %d; want %d", standby.Name, got, q0+1)
		}
	})
	t.Run("read-your-writes waits, then goes to the primary", func(t *testing.T) {
		rctx := poolset.ReadYourWrites(ctx)
		p0, r0 := rywPrimary(), rywStandby()
		q0 := repoOf(t, s, standby.Name, "users").Queries
		insert(rctx, 2002)
		wantUser(rctx, users, 2002)
		counts(p0, r0, 1, 0)
		// The wait polled the standby (WALPositions), but those are
		// poolset's statements, not the repository's queries.
		if got := repoOf(t, s, standby.Name, "users").Queries; got != q0 {
			t.Errorf("users queries on %s after a read that waited, then went to the primary: got %d; want %d", standby.Name, got, q0)
		}
	})
	t.Run("transaction under read-your-writes", func(t *testing.T) {
		rctx := poolset.ReadYourWrites(ctx)
		p0, r0 := rywPrimary(), rywStandby()
		insertInTx(rctx, 2003)
		wantUser(rctx, users, 2003)
		counts(p0, r0, 1, 0)
	})
	var token string
	t.Run("a token carries the write to another request and another set", func(t *testing.T) {
		wctx := poolset.ReadYourWrites(ctx)
		insert(wctx, 2006)
		if token = s.Token(wctx); token == "" {
			t.Fatal("token after a write: got empty")
		}
		p0, r0 := rywPrimary(), rywStandby()
		rctx, err := s.ReadYourWritesToken(context.Background(), token)
		if err != nil {
			t.Fatal(err)
		}
		wantUser(rctx, users, 2006)
		counts(p0, r0, 1, 0)
		other := open()
		octx, err := other.ReadYourWritesToken(context.Background(), token)
		if err != nil {
			t.Fatalf("token in another set: %v", err)
		}
		wantUser(octx, other.Handle("users"), 2006)
		if _, err := readUser(ctx, other.Handle("users"), 2006); !errors.Is(err, sql.ErrNoRows) {
			t.Errorf("plain read in another set: got %v; want sql.ErrNoRows (the token made the difference)", err)
		}
	})
	t.Run("a write through the standby's pool fails", func(t *testing.T) {
		// Through the read pool's own *sql.DB, so that the write reaches
		// the server (a Reader refuses ExecContext before it does).
		_, err := s.Reads()[0].DB().ExecContext(ctx, "INSERT INTO users VALUES ($1, $2)", 3001, "user-3001")
		if !postgres.IsReadOnly(err) {
			t.Errorf("write on the standby: got %v; want SQLSTATE 25006", err)
		}
		var n int
		if err := openDB(t, pair.Primary.DSN("shop")).QueryRowContext(ctx, "SELECT count(*) FROM users WHERE id = 3001").Scan(&n); err != nil || n != 0 {
			t.Errorf("rows of the refused write on the primary: got %d, %v; want 0", n, err)
		}
	})

	if err := standby.ResumeReplay(ctx); err != nil {
		t.Fatal(err)
	}
	caughtUp(t, pair, standby)

	t.Run("a token read on the caught-up standby", func(t *testing.T) {
		p0, r0 := rywPrimary(), rywStandby()
		rctx, err := s.ReadYourWritesToken(context.Background(), token)
		if err != nil {
			t.Fatal(err)
		}
		wantUser(rctx, users, 2006)
		counts(p0, r0, 0, 1)
	})
	t.Run("the caught-up standby serves read-your-writes", func(t *testing.T) {
		wantUser(ctx, users, 2001) // no longer stale
		rctx := poolset.ReadYourWrites(ctx)
		p0, r0 := rywPrimary(), rywStandby()
		q0 := repoOf(t, s, standby.Name, "users").Queries
		insert(rctx, 2004)
		wantUser(rctx, users, 2004)
		insertInTx(rctx, 2005)
		wantUser(rctx, users, 2005)
		counts(p0, r0, 0, 2)
		if got := repoOf(t, s, standby.Name, "users").Queries; got != q0+2 {
			t.Errorf("users queries on %s: got %d after two reads; want %d (the waits' polls not counted)", standby.Name, got, q0+2)
		}
	})
	t.Logf("\n%s", s.Tree())
}
