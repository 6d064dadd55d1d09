package compat_test

import (
	"context"
	"database/sql"
	_ "embed"
	"errors"
	"strings"
	"testing"

	"github.com/poolset/poolset"
	"github.com/poolset/poolset/compat/sqlc/sqlcdb"
)

// The types sqlc's generated code runs on: a Handle, its Read view and a
// transaction begun on either.
var (
	_ sqlcdb.DBTX = (*poolset.Handle)(nil)
	_ sqlcdb.DBTX = (*poolset.Reader)(nil)
	_ sqlcdb.DBTX = (*sql.Tx)(nil)
)

//go:embed sqlc/schema.sql
var schema string

// migrate runs schema.sql, one statement at a time, through h.
func migrate(t *testing.T, ctx context.Context, h *poolset.Handle) {
	t.Helper()
	for stmt := range strings.SplitSeq(schema, ";") {
		if strings.TrimSpace(stmt) == "" {
			continue
		}
		if _, err := h.ExecContext(ctx, stmt); err != nil {
			t.Fatalf("schema: %v", err)
		}
	}
}

func TestSqlc(t *testing.T) {
	ctx := t.Context()
	s := openSet(t, "poolset_compat_sqlc")
	migrate(t, ctx, s.Handle("schema"))
	users, orders := s.Handle("users"), s.Handle("orders")

	// Writes on the Handle go to the primary.
	uq := sqlcdb.New(users)
	alice, err := uq.CreateUser(ctx, sqlcdb.CreateUserParams{Email: "alice@example.com", Name: "Alice"})
	if err != nil {
		t.Fatalf("CreateUser on a Handle: %v", err)
	}
	if _, err := uq.CreateUser(ctx, sqlcdb.CreateUserParams{Email: "bob@example.com", Name: "Bob"}); err != nil {
		t.Fatalf("CreateUser on a Handle: %v", err)
	}

	// Reads on the Read view go to the read pool.
	rq := sqlcdb.New(users.Read())
	u, err := rq.GetUser(ctx, alice)
	if err != nil || u.Name != "Alice" {
		t.Fatalf("GetUser on Read(): got %+v, %v; want Alice", u, err)
	}
	all, err := rq.ListUsers(ctx)
	if err != nil || len(all) != 2 {
		t.Fatalf("ListUsers on Read(): got %d users, %v; want 2", len(all), err)
	}
	_, err = rq.CreateUser(ctx, sqlcdb.CreateUserParams{Email: "eve@example.com", Name: "Eve"})
	if !errors.Is(err, poolset.ErrReadView) {
		t.Errorf("CreateUser on Read(): got %v; want ErrReadView", err)
	}

	// A transaction on the primary, through WithTx.
	tx, err := orders.BeginTx(ctx, nil)
	if err != nil {
		t.Fatalf("BeginTx: %v", err)
	}
	oq := sqlcdb.New(orders).WithTx(tx)
	for _, cents := range []int64{1250, 990} {
		if _, err := oq.CreateOrder(ctx, sqlcdb.CreateOrderParams{UserID: alice, TotalCents: cents}); err != nil {
			t.Fatalf("CreateOrder in a transaction: %v", err)
		}
	}
	if n, err := oq.CountOrders(ctx); err != nil || n != 2 {
		t.Fatalf("CountOrders in the transaction: got %d, %v; want 2", n, err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatalf("Commit: %v", err)
	}

	// A read-only transaction on the read pool, through WithTx.
	rtx, err := orders.Read().BeginTx(ctx, nil)
	if err != nil {
		t.Fatalf("Read().BeginTx: %v", err)
	}
	got, err := sqlcdb.New(orders.Read()).WithTx(rtx).OrdersOfUser(ctx, alice)
	if err != nil || len(got) != 2 {
		t.Fatalf("OrdersOfUser in a read transaction: got %d, %v; want 2", len(got), err)
	}
	if err := rtx.Rollback(); err != nil {
		t.Fatalf("Rollback: %v", err)
	}

	for _, c := range []struct {
		repo          string
		primary, read counts
	}{
		{"users", counts{Queries: 2}, counts{Queries: 2}},
		{"orders", counts{Queries: 3, Txs: 1}, counts{Queries: 1, Txs: 1}},
	} {
		p, r := figures(s, c.repo)
		t.Logf("%s: primary %+v, read %+v", c.repo, p, r)
		if p != c.primary || r != c.read {
			t.Errorf("%s: got primary %+v, read %+v; want primary %+v, read %+v", c.repo, p, r, c.primary, c.read)
		}
	}
	idle(t, s)
}

// TestSqlcPrepared runs sqlc's prepared queries (emit_prepared_queries),
// prepared on a Handle and carried into a transaction by WithTx, and checks
// that their executions count against the repository that prepared them.
// (sqlcdb.Prepare on a Read view fails on MariaDB: it prepares the INSERTs
// too, which a read-only session refuses.)
func TestSqlcPrepared(t *testing.T) {
	ctx := t.Context()
	s := openSet(t, "poolset_compat_sqlc_prepared")
	migrate(t, ctx, s.Handle("schema"))
	users := s.Handle("users")

	pq, err := sqlcdb.Prepare(ctx, users)
	if err != nil {
		t.Fatalf("Prepare on a Handle: %v", err)
	}
	defer pq.Close()
	id, err := pq.CreateUser(ctx, sqlcdb.CreateUserParams{Email: "alice@example.com", Name: "Alice"})
	if err != nil {
		t.Fatalf("prepared CreateUser: %v", err)
	}
	tx, err := users.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pq.WithTx(tx).CreateOrder(ctx, sqlcdb.CreateOrderParams{UserID: id, TotalCents: 500}); err != nil {
		t.Fatalf("prepared CreateOrder in a transaction: %v", err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}

	if u, err := pq.GetUser(ctx, id); err != nil || u.Name != "Alice" {
		t.Fatalf("prepared GetUser: got %+v, %v; want Alice", u, err)
	}
	if err := pq.Close(); err != nil {
		t.Fatal(err)
	}

	p, r := figures(s, "users")
	un, _ := figures(s, poolset.Unattributed)
	t.Logf("users: primary %+v, read %+v; unattributed on primary %+v", p, r, un)
	// The executions count (the prepares do not), all against users: the
	// insert, the insert in the transaction and the read.
	if want := (counts{Queries: 3, Txs: 1}); p != want || r != (counts{}) || un != (counts{}) {
		t.Errorf("got users on primary %+v, on read %+v, unattributed %+v; want %+v, none, none", p, r, un, want)
	}
	idle(t, s)
}
