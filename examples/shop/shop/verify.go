package shop

import (
	"context"
	"fmt"
)

// Check is the result of Verify.
type Check struct {
	Orders   int64 `json:"orders"`
	Accepted int64 `json:"accepted"`
	Rejected int64 `json:"rejected"`
	Products int64 `json:"products"`
	// StockErrors lists each product whose stock received differs from its
	// stock plus the quantity in accepted orders.
	StockErrors []string `json:"stock_errors,omitempty"`
	OK          bool     `json:"ok"`
}

// Verify checks the shop's invariants on the primary: for every product,
// stock received = current stock + quantity in accepted orders (stock
// conserved), and counts the orders by status.
func (s *Shop) Verify(ctx context.Context) (Check, error) {
	var c Check
	err := s.Orders.h.QueryRowContext(ctx,
		"SELECT COUNT(*), COALESCE(SUM(CASE WHEN status = 'accepted' THEN 1 ELSE 0 END), 0), COALESCE(SUM(CASE WHEN status = 'rejected' THEN 1 ELSE 0 END), 0) FROM orders").
		Scan(&c.Orders, &c.Accepted, &c.Rejected)
	if err != nil {
		return c, fmt.Errorf("shop: verify orders: %w", err)
	}
	rows, err := s.Orders.h.QueryContext(ctx, `SELECT p.id, p.stock, p.stock_received, COALESCE(s.sold, 0)
FROM products p LEFT JOIN (
  SELECT i.product_id, SUM(i.qty) AS sold FROM order_items i JOIN orders o ON o.id = i.order_id
  WHERE o.status = 'accepted' GROUP BY i.product_id
) s ON s.product_id = p.id ORDER BY p.id`)
	if err != nil {
		return c, fmt.Errorf("shop: verify stock: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, stock, received, sold int64
		if err := rows.Scan(&id, &stock, &received, &sold); err != nil {
			return c, fmt.Errorf("shop: verify stock: %w", err)
		}
		c.Products++
		if received != stock+sold && len(c.StockErrors) < 20 {
			c.StockErrors = append(c.StockErrors, fmt.Sprintf("product %d: received %d != stock %d + sold %d", id, received, stock, sold))
		}
	}
	if err := rows.Err(); err != nil {
		return c, fmt.Errorf("shop: verify stock: %w", err)
	}
	c.OK = len(c.StockErrors) == 0
	return c, nil
}

// Expected counts, among ids, the orders stored (each at most once: the
// id is the primary key) and how many of those were accepted.
type Expected struct {
	Want     int64 `json:"want"`
	Found    int64 `json:"found"`
	Accepted int64 `json:"accepted"`
	Rejected int64 `json:"rejected"`
}

// CountOrders looks up ids on the primary, in chunks of 1,000.
func (s *Shop) CountOrders(ctx context.Context, ids []string) (Expected, error) {
	e := Expected{Want: int64(len(ids))}
	for len(ids) > 0 {
		n := min(len(ids), 1000)
		args := make([]any, n)
		for i, id := range ids[:n] {
			args[i] = id
		}
		ids = ids[n:]
		var found, accepted int64
		err := s.Orders.h.QueryRowContext(ctx,
			s.dialect.bind("SELECT COUNT(*), COALESCE(SUM(CASE WHEN status = 'accepted' THEN 1 ELSE 0 END), 0) FROM orders WHERE id IN ("+placeholders(n)+")"), args...).
			Scan(&found, &accepted)
		if err != nil {
			return e, fmt.Errorf("shop: count orders: %w", err)
		}
		e.Found += found
		e.Accepted += accepted
		e.Rejected += found - accepted
	}
	return e, nil
}
