package compat_test

import (
	"context"
	"testing"

	"github.com/jmoiron/sqlx"

	"github.com/poolset/poolset"
)

// TestSqlx runs sqlx on a pool's *sql.DB, the way in for libraries that
// insist on one: statements under poolset.WithRepo count against that
// repository, the others under poolset.Unattributed.
func TestSqlx(t *testing.T) {
	ctx := t.Context()
	s := openSet(t, "poolset_compat_sqlx")
	db := sqlx.NewDb(s.Primary().DB(), "mysql")
	setup := poolset.WithRepo(ctx, "schema")
	if _, err := db.ExecContext(setup, "CREATE TABLE report (id INT PRIMARY KEY, total BIGINT NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.NamedExecContext(setup, "INSERT INTO report (id, total) VALUES (:id, :total)",
		[]map[string]any{{"id": 1, "total": 70}, {"id": 2, "total": 30}}); err != nil {
		t.Fatalf("NamedExecContext: %v", err)
	}
	before, _ := figures(s, poolset.Unattributed)

	reports := poolset.WithRepo(ctx, "reports")
	var sum int64
	if err := db.GetContext(reports, &sum, "SELECT SUM(total) FROM report"); err != nil || sum != 100 {
		t.Fatalf("GetContext: got %d, %v; want 100", sum, err)
	}
	var rows []struct {
		ID    int   `db:"id"`
		Total int64 `db:"total"`
	}
	if err := db.SelectContext(reports, &rows, "SELECT id, total FROM report ORDER BY id"); err != nil || len(rows) != 2 {
		t.Fatalf("SelectContext: got %d rows, %v; want 2", len(rows), err)
	}
	tx, err := db.BeginTxx(reports, nil)
	if err != nil {
		t.Fatalf("BeginTxx: %v", err)
	}
	if _, err := tx.ExecContext(reports, "UPDATE report SET total = total + 1 WHERE id = 1"); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}

	var n int
	if err := db.GetContext(context.Background(), &n, "SELECT COUNT(*) FROM report"); err != nil || n != 2 {
		t.Fatalf("GetContext without WithRepo: got %d, %v; want 2", n, err)
	}

	p, r := figures(s, "reports")
	un, _ := figures(s, poolset.Unattributed)
	t.Logf("reports: primary %+v, read %+v; unattributed: %+v before, %+v after", p, r, before, un)
	if want := (counts{Queries: 3, Txs: 1}); p != want || r != (counts{}) {
		t.Errorf("reports: got primary %+v, read %+v; want primary %+v, read none", p, r, want)
	}
	if want := (counts{Queries: before.Queries + 1}); un != want {
		t.Errorf("unattributed on primary: got %+v; want %+v", un, want)
	}
	if sc, _ := figures(s, "schema"); sc.Queries != 2 {
		t.Errorf("schema on primary: got %+v; want 2 queries", sc)
	}
	idle(t, s)
}
