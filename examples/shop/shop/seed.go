package shop

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
)

// SeedConfig says how many users and products Seed stores.
type SeedConfig struct {
	Users    int   // ids 1..Users; default 1,000
	Products int   // ids 1..Products; default 100
	Stock    int64 // initial stock of each product; default 1,000,000
}

func (c *SeedConfig) setDefaults() {
	if c.Users <= 0 {
		c.Users = 1000
	}
	if c.Products <= 0 {
		c.Products = 100
	}
	if c.Stock <= 0 {
		c.Stock = 1_000_000
	}
}

// SeedResult counts what Seed stored; rows that existed are left as they
// were and not counted.
type SeedResult struct {
	Users    int64 `json:"users"`
	Products int64 `json:"products"`
}

// seedBatch is the rows per INSERT statement.
const seedBatch = 500

// Seed stores users 1..N (user-N, user-N@example.com) and products 1..N
// (product-N, with a price from the id and the given stock), in batches on
// the primary. It is idempotent: rows that exist are left alone, so the
// stock of a product already sold from is not reset.
func (s *Shop) Seed(ctx context.Context, cfg SeedConfig) (SeedResult, error) {
	cfg.setDefaults()
	var res SeedResult
	n, err := s.seedRows(ctx, s.Users.h.ExecContext, "users (id, email, name)", "(?,?,?)", cfg.Users,
		func(id int64) []any {
			return []any{id, fmt.Sprintf("user-%d@example.com", id), fmt.Sprintf("user-%d", id)}
		})
	res.Users = n
	if err != nil {
		return res, fmt.Errorf("shop: seed users: %w", err)
	}
	n, err = s.seedRows(ctx, s.Products.h.ExecContext, "products (id, name, price_cents, stock, stock_received)", "(?,?,?,?,?)", cfg.Products,
		func(id int64) []any {
			return []any{id, fmt.Sprintf("product-%d", id), PriceOf(id), cfg.Stock, cfg.Stock}
		})
	res.Products = n
	if err != nil {
		return res, fmt.Errorf("shop: seed products: %w", err)
	}
	return res, nil
}

// PriceOf is the price in cents Seed gives product id: from 1.00 to 99.99.
func PriceOf(id int64) int64 { return 100 + (id*7919)%9900 }

// seedRows inserts rows 1..n into table (with its column list), one
// tuple of placeholders per row, skipping rows whose key exists.
func (s *Shop) seedRows(ctx context.Context, exec func(context.Context, string, ...any) (sql.Result, error), table, tuple string, n int, row func(int64) []any) (int64, error) {
	head, tail := s.dialect.insertIgnore()
	head += table + " VALUES "
	var total int64
	for lo := 1; lo <= n; lo += seedBatch {
		hi := min(lo+seedBatch-1, n)
		var b strings.Builder
		b.WriteString(head)
		args := make([]any, 0, (hi-lo+1)*5)
		for id := lo; id <= hi; id++ {
			if id > lo {
				b.WriteString(",")
			}
			b.WriteString(tuple)
			args = append(args, row(int64(id))...)
		}
		b.WriteString(tail)
		res, err := exec(ctx, s.dialect.bind(b.String()), args...)
		if err != nil {
			return total, err
		}
		if k, err := res.RowsAffected(); err == nil {
			total += k
		}
	}
	return total, nil
}
