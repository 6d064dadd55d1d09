package shop

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/poolset/poolset"
)

// ProductRepo stores products on the primary. Product details (name and
// price, never the stock) are read through the cache when there is one.
type ProductRepo struct {
	h       *poolset.Handle
	dialect Dialect
	cache   ProductCache
}

// NewProductRepo returns a ProductRepo on h; cache may be nil.
func NewProductRepo(h *poolset.Handle, d Dialect, cache ProductCache) *ProductRepo {
	return &ProductRepo{h: h, dialect: d, cache: cache}
}

// Get returns product id with its current stock, from the primary.
func (r *ProductRepo) Get(ctx context.Context, id int64) (Product, error) {
	var p Product
	err := r.h.QueryRowContext(ctx, r.dialect.bind("SELECT id, name, price_cents, stock FROM products WHERE id = ?"), id).
		Scan(&p.ID, &p.Name, &p.PriceCents, &p.Stock)
	if errors.Is(err, sql.ErrNoRows) {
		return Product{}, fmt.Errorf("%w: %d", ErrProductNotFound, id)
	}
	if err != nil {
		return Product{}, fmt.Errorf("shop: get product %d: %w", id, err)
	}
	return p, nil
}

// Details returns product id's name and price: from the cache when it has
// them, else from the primary, then cached.
func (r *ProductRepo) Details(ctx context.Context, id int64) (ProductDetails, error) {
	if r.cache != nil {
		if d, ok := r.cache.GetProduct(ctx, id); ok {
			return d, nil
		}
	}
	var d ProductDetails
	err := r.h.QueryRowContext(ctx, r.dialect.bind("SELECT id, name, price_cents FROM products WHERE id = ?"), id).
		Scan(&d.ID, &d.Name, &d.PriceCents)
	if errors.Is(err, sql.ErrNoRows) {
		return ProductDetails{}, fmt.Errorf("%w: %d", ErrProductNotFound, id)
	}
	if err != nil {
		return ProductDetails{}, fmt.Errorf("shop: get product %d: %w", id, err)
	}
	if r.cache != nil {
		r.cache.SetProduct(ctx, d)
	}
	return d, nil
}

// Update changes product id's name and price, then drops its cached
// details.
func (r *ProductRepo) Update(ctx context.Context, d ProductDetails) error {
	res, err := r.h.ExecContext(ctx, r.dialect.bind("UPDATE products SET name = ?, price_cents = ? WHERE id = ?"), d.Name, d.PriceCents, d.ID)
	if err != nil {
		return fmt.Errorf("shop: update product %d: %w", d.ID, err)
	}
	if r.cache != nil {
		r.cache.DeleteProduct(ctx, d.ID)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		if _, err := r.Get(ctx, d.ID); err != nil {
			return err
		}
	}
	return nil
}

// lockTx reads and locks the products ids (sorted, distinct) inside tx, in
// id order so that concurrent orders do not deadlock.
func (r *ProductRepo) lockTx(ctx context.Context, tx *sql.Tx, ids []int64) (map[int64]Product, error) {
	q := "SELECT id, name, price_cents, stock FROM " + r.dialect.products() + " WHERE id IN (" + placeholders(len(ids)) + ") ORDER BY id" + r.dialect.forUpdate()
	rows, err := tx.QueryContext(ctx, r.dialect.bind(q), int64Args(ids)...)
	if err != nil {
		return nil, fmt.Errorf("shop: lock products: %w", err)
	}
	defer rows.Close()
	out := make(map[int64]Product, len(ids))
	for rows.Next() {
		var p Product
		if err := rows.Scan(&p.ID, &p.Name, &p.PriceCents, &p.Stock); err != nil {
			return nil, fmt.Errorf("shop: lock products: %w", err)
		}
		out[p.ID] = p
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("shop: lock products: %w", err)
	}
	return out, nil
}

func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?,", n), ",")
}

func int64Args(ids []int64) []any {
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	return args
}
