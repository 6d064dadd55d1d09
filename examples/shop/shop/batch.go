package shop

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// PlaceOrders places a group of valid orders in one transaction, with a
// fixed number of statements whatever the group's size: it reads which ids
// exist, which users exist and the products' stock (locked, in id order),
// decides each order in turn as PlaceOrder would (so a later order sees
// the stock an earlier one took), then stores every order, every item and
// the new stock with one statement each. Each order is still all or
// nothing: its items' stock is taken together or not at all. An id placed
// before, or twice in the group, comes back with Duplicate set and changes
// nothing.
//
// The result has one Placed per order, in order. A transaction that hits a
// deadlock or a busy database is run again, up to 3 times. On error nothing
// is stored; the caller may place the orders one by one (PlaceOrder), so
// that one bad order does not hold back the rest.
// Invalid orders must be filtered out first: PlaceOrders returns an error
// wrapping ErrInvalidOrder if it meets one.
func (s *Shop) PlaceOrders(ctx context.Context, orders []Order) ([]Placed, error) {
	if len(orders) == 0 {
		return nil, nil
	}
	for _, o := range orders {
		if err := o.Validate(); err != nil {
			return nil, err
		}
	}
	var out []Placed
	err := s.retry(ctx, func() (err error) {
		out, err = s.placeGroupOnce(ctx, orders)
		return err
	})
	return out, err
}

func (s *Shop) placeGroupOnce(ctx context.Context, orders []Order) ([]Placed, error) {
	tx, err := s.Orders.h.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("shop: place %d orders: %w", len(orders), err)
	}
	defer tx.Rollback()
	out, err := s.placeGroup(ctx, tx, orders)
	if err != nil {
		return nil, fmt.Errorf("shop: place %d orders: %w", len(orders), err)
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("shop: place %d orders: commit: %w", len(orders), err)
	}
	return out, nil
}

func (s *Shop) placeGroup(ctx context.Context, tx *sql.Tx, orders []Order) ([]Placed, error) {
	var orderIDs []any
	userSet, productSet := map[int64]bool{}, map[int64]bool{}
	for _, o := range orders {
		orderIDs = append(orderIDs, o.ID)
		userSet[o.UserID] = true
		for _, it := range o.Items {
			productSet[it.ProductID] = true
		}
	}
	existing, err := s.existingOrders(ctx, tx, orderIDs)
	if err != nil {
		return nil, err
	}
	users, err := s.existingUsers(ctx, tx, sortedKeys(userSet))
	if err != nil {
		return nil, err
	}
	products, err := s.Products.lockTx(ctx, tx, sortedKeys(productSet))
	if err != nil {
		return nil, err
	}

	out := make([]Placed, len(orders))
	var fresh []Order
	seen := map[string]bool{}
	taken := map[int64]int64{}
	for i, o := range orders {
		if existing[o.ID] || seen[o.ID] {
			out[i] = Placed{Order: o, Duplicate: true}
			continue
		}
		seen[o.ID] = true
		o, qty := decide(o, users[o.UserID], products, taken)
		if o.Status == Accepted {
			for id, q := range qty {
				taken[id] += q
			}
		}
		out[i] = Placed{Order: o}
		fresh = append(fresh, o)
	}
	if err := s.Orders.insertManyTx(ctx, tx, fresh, products); err != nil {
		return nil, err
	}
	if err := s.Products.takeManyTx(ctx, tx, taken); err != nil {
		return nil, err
	}
	// Duplicates report what was stored the first time.
	for i := range out {
		if out[i].Duplicate && existing[out[i].Order.ID] {
			prev, err := s.Orders.getTx(ctx, tx, out[i].Order.ID)
			if err != nil && !errors.Is(err, ErrOrderNotFound) {
				return nil, err
			}
			if err == nil {
				out[i].Order = prev
			}
		}
	}
	return out, nil
}

func (s *Shop) existingOrders(ctx context.Context, tx *sql.Tx, ids []any) (map[string]bool, error) {
	rows, err := tx.QueryContext(ctx, s.dialect.bind("SELECT id FROM orders WHERE id IN ("+placeholders(len(ids))+")"), ids...)
	if err != nil {
		return nil, fmt.Errorf("look up order ids: %w", err)
	}
	return scanSet(rows, func(r *sql.Rows) (string, error) { var id string; err := r.Scan(&id); return id, err })
}

func (s *Shop) existingUsers(ctx context.Context, tx *sql.Tx, ids []int64) (map[int64]bool, error) {
	rows, err := tx.QueryContext(ctx, s.dialect.bind("SELECT id FROM users WHERE id IN ("+placeholders(len(ids))+")"), int64Args(ids)...)
	if err != nil {
		return nil, fmt.Errorf("look up users: %w", err)
	}
	return scanSet(rows, func(r *sql.Rows) (int64, error) { var id int64; err := r.Scan(&id); return id, err })
}

func scanSet[K comparable](rows *sql.Rows, scan func(*sql.Rows) (K, error)) (map[K]bool, error) {
	defer rows.Close()
	out := map[K]bool{}
	for rows.Next() {
		k, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out[k] = true
	}
	return out, rows.Err()
}

// decide sets o's status, reason and total: rejected when its user is
// unknown (userOK false), a product is unknown, or a product's stock, less
// what taken holds for orders decided before it, is short; else accepted.
// products are the locked rows of o's products (nil when the user is
// unknown). It returns o's quantity per product.
func decide(o Order, userOK bool, products map[int64]Product, taken map[int64]int64) (Order, map[int64]int64) {
	qty := map[int64]int64{}
	for _, it := range o.Items {
		qty[it.ProductID] += it.Qty
	}
	o.Status, o.Reason, o.TotalCents = Accepted, "", 0
	if !userOK {
		o.Status, o.Reason = Rejected, fmt.Sprintf("unknown user %d", o.UserID)
		return o, qty
	}
	for _, id := range sortedKeys(qty) {
		p, found := products[id]
		switch have := p.Stock - taken[id]; {
		case !found:
			o.Status, o.Reason = Rejected, fmt.Sprintf("unknown product %d", id)
		case have < qty[id]:
			o.Status, o.Reason = Rejected, fmt.Sprintf("insufficient stock for product %d: want %d, have %d", id, qty[id], have)
		default:
			o.TotalCents += p.PriceCents * qty[id]
			continue
		}
		o.TotalCents = 0
		return o, qty
	}
	return o, qty
}

// insertManyTx stores orders and their items with one statement each. An
// item of an accepted order is stored with its product's price; an item of
// a rejected one with 0.
func (r *OrderRepo) insertManyTx(ctx context.Context, tx *sql.Tx, orders []Order, products map[int64]Product) error {
	if len(orders) == 0 {
		return nil
	}
	var b, items strings.Builder
	b.WriteString("INSERT INTO orders (id, user_id, status, reason, total_cents) VALUES ")
	items.WriteString("INSERT INTO order_items (order_id, line, product_id, qty, price_cents) VALUES ")
	args := make([]any, 0, 5*len(orders))
	var itemArgs []any
	for i, o := range orders {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString("(?,?,?,?,?)")
		args = append(args, o.ID, o.UserID, string(o.Status), o.Reason, o.TotalCents)
		for j, it := range o.Items {
			if len(itemArgs) > 0 {
				items.WriteString(",")
			}
			items.WriteString("(?,?,?,?,?)")
			price := int64(0)
			if o.Status == Accepted {
				price = products[it.ProductID].PriceCents
			}
			itemArgs = append(itemArgs, o.ID, j+1, it.ProductID, it.Qty, price)
		}
	}
	if _, err := tx.ExecContext(ctx, r.dialect.bind(b.String()), args...); err != nil {
		return fmt.Errorf("store orders: %w", err)
	}
	if _, err := tx.ExecContext(ctx, r.dialect.bind(items.String()), itemArgs...); err != nil {
		return fmt.Errorf("store order items: %w", err)
	}
	return nil
}

// takeManyTx takes qty[id] from each product's stock with one statement.
// The rows must be locked and the stock checked.
func (r *ProductRepo) takeManyTx(ctx context.Context, tx *sql.Tx, qty map[int64]int64) error {
	if len(qty) == 0 {
		return nil
	}
	ids := sortedKeys(qty)
	var b strings.Builder
	b.WriteString("UPDATE " + r.dialect.products() + " SET stock = stock - CASE id")
	args := make([]any, 0, 3*len(ids))
	then := " WHEN ? THEN " + r.dialect.bigint("?")
	for _, id := range ids {
		b.WriteString(then)
		args = append(args, id, qty[id])
	}
	b.WriteString(" END WHERE id IN (" + placeholders(len(ids)) + ")")
	args = append(args, int64Args(ids)...)
	res, err := tx.ExecContext(ctx, r.dialect.bind(b.String()), args...)
	if err != nil {
		return fmt.Errorf("take stock: %w", err)
	}
	if n, err := res.RowsAffected(); err == nil && n != int64(len(ids)) {
		return fmt.Errorf("take stock: updated %d products; want %d", n, len(ids))
	}
	return nil
}

func sortedKeys[V any](m map[int64]V) []int64 {
	ids := make([]int64, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return ids
}
