package postgres_test

import (
	"context"
	"strings"
	"testing"

	"github.com/poolset/poolset"
	"github.com/poolset/poolset/poolsettest"
	"github.com/poolset/poolset/postgres"
)

func TestConfigs(t *testing.T) {
	for _, dsn := range []string{
		"postgres://app:S3cret@127.0.0.1:5432/shop?sslmode=disable",
		"host=127.0.0.1 port=5432 user=app password=S3cret dbname=shop sslmode=disable",
	} {
		pc, err := postgres.Standby(dsn, 0)
		if err != nil {
			t.Fatal(err)
		}
		if pc.Address != "app@127.0.0.1:5432/shop" || !pc.ReadOnly || pc.Kind != "postgres" || pc.Connector == nil {
			t.Errorf("%s: got %+v; want the address without the password, read-only, a connector", dsn, pc)
		}
	}
	if _, err := postgres.Primary("postgres://app:S3cret@127.0.0.1:notaport/shop"); err == nil {
		t.Error("malformed DSN: got nil; want an error")
	} else if strings.Contains(err.Error(), "S3cret") {
		t.Errorf("error shows the password: %q", err)
	}
}

// TestStandbyRefusesWrites: a write sent to a Standby pool fails with
// IsReadOnly and writes nothing; the primary's write goes through; a
// duplicate key is told apart.
func TestStandbyRefusesWrites(t *testing.T) {
	ctx := context.Background()
	dsn := poolsettest.PostgresDatabase(t, "poolset_t_pg_readonly")
	primary, err := postgres.Primary(dsn)
	if err != nil {
		t.Fatal(err)
	}
	read, err := postgres.Standby(dsn, 0)
	if err != nil {
		t.Fatal(err)
	}
	// The machine's server is no standby: its health check would keep the
	// pool out of the rotation (TestStandbyReadYourWrites refuses a write
	// on a real standby).
	read.Health = nil
	set, err := poolset.Open(ctx, poolset.Config{Primary: primary, Reads: []poolset.PoolConfig{read}})
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close(ctx)
	h := set.Handle("users")
	if _, err := h.ExecContext(ctx, "CREATE TABLE users (id bigint PRIMARY KEY, name text NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.ExecContext(ctx, "INSERT INTO users VALUES ($1, $2)", 1, "ada"); err != nil {
		t.Fatal(err)
	}
	_, err = h.ExecContext(ctx, "INSERT INTO users VALUES ($1, $2)", 1, "ada")
	if !postgres.IsDuplicateKey(err) || postgres.IsRetryable(err) || postgres.IsConnError(err) {
		t.Errorf("duplicate insert: got %v; want a duplicate key, not retryable", err)
	}
	// Through the read pool's own *sql.DB, so that the write reaches the
	// server (a Reader refuses ExecContext before it does).
	_, err = set.Reads()[0].DB().ExecContext(ctx, "INSERT INTO users VALUES ($1, $2)", 2, "bob")
	if !postgres.IsReadOnly(err) {
		t.Errorf("write on the standby pool: got %v; want SQLSTATE 25006", err)
	}
	var n int
	if err := h.Read().QueryRowContext(ctx, "SELECT count(*) FROM users").Scan(&n); err != nil || n != 1 {
		t.Errorf("rows: got %d, %v; want 1 (the refused write wrote nothing)", n, err)
	}
	reads := map[string]int64{}
	for _, r := range set.Stats()[1].Repos {
		reads[r.Repo] = r.Queries
	}
	if reads["users"] != 1 || reads[poolset.Unattributed] != 1 {
		t.Errorf("read pool's queries by repository: got %v; want users 1 and the refused write unattributed", reads)
	}
	if err := set.Close(ctx); err != nil {
		t.Errorf("close: %v", err)
	}
}
