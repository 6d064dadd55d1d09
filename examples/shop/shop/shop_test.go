package shop_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/poolset/poolset"
	"github.com/poolset/poolset/examples/shop/shop"
	"github.com/poolset/poolset/mysql"
	"github.com/poolset/poolset/poolsettest"
	"github.com/poolset/poolset/postgres"
	"github.com/poolset/poolset/sqlite"
)

// backends opens a migrated, seeded shop on each SQL backend in turn.
func forEachBackend(t *testing.T, fn func(t *testing.T, s *shop.Shop)) {
	t.Run("sqlite", func(t *testing.T) {
		primary, read, err := sqlite.PoolConfigs(filepath.Join(t.TempDir(), "shop.db"), 2)
		if err != nil {
			t.Fatal(err)
		}
		d := shop.Dialect{Name: "sqlite", IsDuplicateKey: sqlite.IsDuplicateKey, IsRetryable: sqlite.IsRetryable}
		fn(t, openShop(t, poolset.Config{Primary: primary, Reads: []poolset.PoolConfig{read}}, d))
	})
	t.Run("mariadb", func(t *testing.T) {
		dsn := poolsettest.MySQLDatabase(t, "poolset_t_shop")
		primary, err := mysql.Primary(dsn)
		if err != nil {
			t.Fatal(err)
		}
		read, err := mysql.Replica(dsn, 0)
		if err != nil {
			t.Fatal(err)
		}
		d := shop.Dialect{Name: "mysql", IsDuplicateKey: mysql.IsDuplicateKey, IsRetryable: mysql.IsRetryable}
		fn(t, openShop(t, poolset.Config{Primary: primary, Reads: []poolset.PoolConfig{read}}, d))
	})
	t.Run("postgres", func(t *testing.T) {
		dsn := poolsettest.PostgresDatabase(t, "poolset_t_shop")
		primary, err := postgres.Primary(dsn)
		if err != nil {
			t.Fatal(err)
		}
		// A read-only session on the same server: user reads must work
		// there, writes must not be sent there.
		read, err := postgres.Standby(dsn, 0)
		if err != nil {
			t.Fatal(err)
		}
		d := shop.Dialect{Name: shop.Postgres, IsDuplicateKey: postgres.IsDuplicateKey, IsRetryable: postgres.IsRetryable}
		fn(t, openShop(t, poolset.Config{Primary: primary, Reads: []poolset.PoolConfig{read}}, d))
	})
}

func openShop(t *testing.T, cfg poolset.Config, d shop.Dialect) *shop.Shop {
	t.Helper()
	ctx := context.Background()
	set, err := poolset.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := set.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	if n, err := shop.Migrate(ctx, set.Primary().DB(), d); err != nil || n != 1 {
		t.Fatalf("migrate: got %d, %v; want 1 applied", n, err)
	}
	if n, err := shop.Migrate(ctx, set.Primary().DB(), d); err != nil || n != 0 {
		t.Fatalf("migrate again: got %d, %v; want 0 applied", n, err)
	}
	s := shop.New(set, d, nil)
	if _, err := s.Seed(ctx, shop.SeedConfig{Users: 20, Products: 5, Stock: 10}); err != nil {
		t.Fatal(err)
	}
	return s
}

func stock(t *testing.T, s *shop.Shop, id int64) int64 {
	t.Helper()
	p, err := s.Products.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return p.Stock
}

func TestPlaceOrder(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *shop.Shop) {
		ctx := context.Background()
		o := shop.Order{ID: "o-1", UserID: 1, Items: []shop.Item{{ProductID: 1, Qty: 2}, {ProductID: 2, Qty: 3}, {ProductID: 1, Qty: 1}}}
		p, err := s.PlaceOrder(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		want := 3*shop.PriceOf(1) + 3*shop.PriceOf(2)
		if p.Duplicate || p.Order.Status != shop.Accepted || p.Order.TotalCents != want {
			t.Fatalf("placed: got %+v; want accepted, total %d", p, want)
		}
		if got1, got2 := stock(t, s, 1), stock(t, s, 2); got1 != 7 || got2 != 7 {
			t.Errorf("stock: got %d, %d; want 7, 7", got1, got2)
		}
		again, err := s.PlaceOrder(ctx, o)
		if err != nil || !again.Duplicate || again.Order.Status != shop.Accepted || len(again.Order.Items) != 3 {
			t.Fatalf("placed again: got %+v, %v; want the stored order marked duplicate", again, err)
		}
		if got := stock(t, s, 1); got != 7 {
			t.Errorf("stock after the duplicate: got %d; want 7", got)
		}
		got, err := s.Orders.Get(ctx, "o-1")
		if err != nil || got.UserID != 1 || len(got.Items) != 3 {
			t.Errorf("stored order: got %+v, %v", got, err)
		}
	})
}

func TestPlaceOrderRejects(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *shop.Shop) {
		ctx := context.Background()
		cases := []struct {
			name   string
			order  shop.Order
			reason string
		}{
			{"unknown user", shop.Order{ID: "r-1", UserID: 999, Items: []shop.Item{{ProductID: 1, Qty: 1}}}, "unknown user 999"},
			{"unknown product", shop.Order{ID: "r-2", UserID: 1, Items: []shop.Item{{ProductID: 1, Qty: 1}, {ProductID: 77, Qty: 1}}}, "unknown product 77"},
			{"short stock", shop.Order{ID: "r-3", UserID: 1, Items: []shop.Item{{ProductID: 3, Qty: 1}, {ProductID: 4, Qty: 11}}}, "insufficient stock for product 4: want 11, have 10"},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				p, err := s.PlaceOrder(ctx, c.order)
				if err != nil {
					t.Fatal(err)
				}
				if p.Order.Status != shop.Rejected || p.Order.Reason != c.reason {
					t.Errorf("got %s %q; want rejected %q", p.Order.Status, p.Order.Reason, c.reason)
				}
				stored, err := s.Orders.Get(ctx, c.order.ID)
				if err != nil || stored.Status != shop.Rejected || stored.Reason != c.reason {
					t.Errorf("stored: got %+v, %v; want rejected with the reason", stored, err)
				}
			})
		}
		for id := int64(1); id <= 5; id++ {
			if got := stock(t, s, id); got != 10 {
				t.Errorf("stock of product %d after rejections: got %d; want 10 (none taken)", id, got)
			}
		}
		c, err := s.Verify(ctx)
		if err != nil || !c.OK || c.Rejected != 3 || c.Accepted != 0 {
			t.Errorf("verify: got %+v, %v; want ok with 3 rejected", c, err)
		}
	})
}

func TestPlaceOrderConcurrentDuplicates(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *shop.Shop) {
		ctx := context.Background()
		o := shop.Order{ID: "same", UserID: 2, Items: []shop.Item{{ProductID: 5, Qty: 4}}}
		var wg sync.WaitGroup
		var mu sync.Mutex
		firsts, dups := 0, 0
		for range 8 {
			wg.Go(func() {
				p, err := s.PlaceOrder(ctx, o)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err != nil:
					t.Error(err)
				case p.Duplicate:
					dups++
				default:
					firsts++
				}
			})
		}
		wg.Wait()
		if firsts != 1 || dups != 7 {
			t.Errorf("got %d first placements and %d duplicates; want 1 and 7", firsts, dups)
		}
		if got := stock(t, s, 5); got != 6 {
			t.Errorf("stock: got %d; want 6 (taken once)", got)
		}
	})
}

func TestValidate(t *testing.T) {
	long := fmt.Sprintf("%065d", 0)
	cases := []shop.Order{
		{UserID: 1, Items: []shop.Item{{ProductID: 1, Qty: 1}}},
		{ID: long, UserID: 1, Items: []shop.Item{{ProductID: 1, Qty: 1}}},
		{ID: "x", Items: []shop.Item{{ProductID: 1, Qty: 1}}},
		{ID: "x", UserID: 1},
		{ID: "x", UserID: 1, Items: []shop.Item{{ProductID: 0, Qty: 1}}},
		{ID: "x", UserID: 1, Items: []shop.Item{{ProductID: 1, Qty: 0}}},
		{ID: "x", UserID: 1, Items: []shop.Item{{ProductID: 1, Qty: -3}}},
	}
	for i, o := range cases {
		if err := o.Validate(); !errors.Is(err, shop.ErrInvalidOrder) {
			t.Errorf("case %d: got %v; want ErrInvalidOrder", i, err)
		}
	}
	if err := (shop.Order{ID: "x", UserID: 1, Items: []shop.Item{{ProductID: 1, Qty: 1}}}).Validate(); err != nil {
		t.Errorf("valid order: got %v; want nil", err)
	}
}

func TestUsers(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *shop.Shop) {
		ctx := context.Background()
		if err := s.Users.Register(ctx, shop.User{ID: 500, Email: "a@example.com", Name: "A"}); err != nil {
			t.Fatal(err)
		}
		if err := s.Users.Register(ctx, shop.User{ID: 500, Email: "b@example.com", Name: "B"}); err != nil {
			t.Fatal(err)
		}
		u, err := s.Users.Get(ctx, 500)
		if err != nil || u.Email != "b@example.com" {
			t.Errorf("get: got %+v, %v; want the updated user", u, err)
		}
		if _, err := s.Users.Get(ctx, 501); !errors.Is(err, shop.ErrUserNotFound) {
			t.Errorf("get unknown: got %v; want ErrUserNotFound", err)
		}
	})
}

func TestMixConservesStock(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *shop.Shop) {
		ctx := context.Background()
		if _, err := s.Seed(ctx, shop.SeedConfig{Users: 50, Products: 10, Stock: 100}); err != nil {
			t.Fatal(err)
		}
		r := shop.NewMix(s, shop.MixConfig{Clients: 8, Ops: 400, Users: 50, Products: 10}).Run(ctx)
		if r.Errors != 0 || r.Ops != 400 || r.Orders != r.Accepted+r.Rejected {
			t.Fatalf("mix: got %+v; want 400 ops, no errors", r)
		}
		c, err := s.Verify(ctx)
		if err != nil || !c.OK || c.Orders != r.Orders {
			t.Errorf("verify: got %+v, %v; want ok with %d orders", c, err, r.Orders)
		}
	})
}

func TestPlaceOrdersGroup(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *shop.Shop) {
		ctx := context.Background()
		if _, err := s.PlaceOrder(ctx, shop.Order{ID: "g-0", UserID: 1, Items: []shop.Item{{ProductID: 1, Qty: 1}}}); err != nil {
			t.Fatal(err)
		}
		group := []shop.Order{
			{ID: "g-0", UserID: 1, Items: []shop.Item{{ProductID: 1, Qty: 1}}},                          // placed before
			{ID: "g-1", UserID: 1, Items: []shop.Item{{ProductID: 1, Qty: 5}, {ProductID: 2, Qty: 2}}},  // accepted
			{ID: "g-2", UserID: 2, Items: []shop.Item{{ProductID: 1, Qty: 5}}},                          // short: 4 left
			{ID: "g-3", UserID: 999, Items: []shop.Item{{ProductID: 3, Qty: 1}}},                        // unknown user
			{ID: "g-4", UserID: 3, Items: []shop.Item{{ProductID: 3, Qty: 1}, {ProductID: 42, Qty: 1}}}, // unknown product
			{ID: "g-1", UserID: 1, Items: []shop.Item{{ProductID: 1, Qty: 5}}},                          // twice in the group
			{ID: "g-5", UserID: 3, Items: []shop.Item{{ProductID: 1, Qty: 4}}},                          // takes the last 4
		}
		got, err := s.PlaceOrders(ctx, group)
		if err != nil {
			t.Fatal(err)
		}
		want := []struct {
			dup    bool
			status shop.Status
		}{{true, shop.Accepted}, {false, shop.Accepted}, {false, shop.Rejected}, {false, shop.Rejected}, {false, shop.Rejected}, {true, ""}, {false, shop.Accepted}}
		for i, w := range want {
			if got[i].Duplicate != w.dup || (w.status != "" && got[i].Order.Status != w.status) {
				t.Errorf("order %d (%s): got duplicate %v status %s %q; want %v %s", i, group[i].ID, got[i].Duplicate, got[i].Order.Status, got[i].Order.Reason, w.dup, w.status)
			}
		}
		if got1, got2, got3 := stock(t, s, 1), stock(t, s, 2), stock(t, s, 3); got1 != 0 || got2 != 8 || got3 != 10 {
			t.Errorf("stock: got %d, %d, %d; want 0, 8, 10", got1, got2, got3)
		}
		c, err := s.Verify(ctx)
		if err != nil || !c.OK || c.Orders != 6 || c.Accepted != 3 {
			t.Errorf("verify: got %+v, %v; want ok, 6 orders, 3 accepted", c, err)
		}
		// A group run again changes nothing.
		again, err := s.PlaceOrders(ctx, group)
		if err != nil {
			t.Fatal(err)
		}
		for i, p := range again {
			if !p.Duplicate {
				t.Errorf("order %d run again: got not duplicate; want duplicate", i)
			}
		}
		if again[1].Order.Status != shop.Accepted || len(again[1].Order.Items) != 2 {
			t.Errorf("duplicate g-1: got %+v; want the stored accepted order", again[1].Order)
		}
	})
}
