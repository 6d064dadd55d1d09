package shop

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/poolset/poolset"
)

// OrderRepo stores orders and their items on the primary.
type OrderRepo struct {
	h       *poolset.Handle
	dialect Dialect
}

// NewOrderRepo returns an OrderRepo on h.
func NewOrderRepo(h *poolset.Handle, d Dialect) *OrderRepo { return &OrderRepo{h: h, dialect: d} }

// Get returns order id with its items, from the primary.
func (r *OrderRepo) Get(ctx context.Context, id string) (Order, error) {
	tx, err := r.h.BeginTx(ctx, nil)
	if err != nil {
		return Order{}, fmt.Errorf("shop: get order %s: %w", id, err)
	}
	defer tx.Rollback()
	return r.getTx(ctx, tx, id)
}

func (r *OrderRepo) getTx(ctx context.Context, tx *sql.Tx, id string) (Order, error) {
	o := Order{ID: id}
	err := tx.QueryRowContext(ctx, r.dialect.bind("SELECT user_id, status, reason, total_cents FROM orders WHERE id = ?"), id).
		Scan(&o.UserID, &o.Status, &o.Reason, &o.TotalCents)
	if errors.Is(err, sql.ErrNoRows) {
		return Order{}, fmt.Errorf("%w: %s", ErrOrderNotFound, id)
	}
	if err != nil {
		return Order{}, fmt.Errorf("shop: get order %s: %w", id, err)
	}
	rows, err := tx.QueryContext(ctx, r.dialect.bind("SELECT product_id, qty FROM order_items WHERE order_id = ? ORDER BY line"), id)
	if err != nil {
		return Order{}, fmt.Errorf("shop: get order %s items: %w", id, err)
	}
	defer rows.Close()
	for rows.Next() {
		var it Item
		if err := rows.Scan(&it.ProductID, &it.Qty); err != nil {
			return Order{}, fmt.Errorf("shop: get order %s items: %w", id, err)
		}
		o.Items = append(o.Items, it)
	}
	return o, rows.Err()
}

// Placed is the outcome of PlaceOrder.
type Placed struct {
	// Order is the stored order, with its status, reason and total.
	Order Order
	// Duplicate is true when the order id had been placed before: nothing
	// was changed, and Order is what was stored the first time.
	Duplicate bool
}

// maxAttempts bounds the runs of an order transaction that fails with a
// retryable error (deadlock, busy database).
const maxAttempts = 3

// PlaceOrder places o in one transaction on the shared primary pool, across
// the three repositories: the user must exist and every item's stock must
// suffice, else the order is stored as rejected with the reason and no
// stock moves; if accepted, all items' stock is taken or none is. Placing
// an id that exists has no second effect and returns the stored order with
// Duplicate set. An invalid order (see Order.Validate) is not stored and
// its error wraps ErrInvalidOrder. A transaction that hits a deadlock or a
// busy database is run again, up to 3 times.
func (s *Shop) PlaceOrder(ctx context.Context, o Order) (Placed, error) {
	if err := o.Validate(); err != nil {
		return Placed{}, err
	}
	var p Placed
	err := s.retry(ctx, func() (err error) {
		p, err = s.placeOnce(ctx, o)
		return err
	})
	return p, err
}

// retry runs op, and again after a pause of 5 ms times the attempts so far,
// while it fails with an error the dialect calls retryable (a deadlock, a
// busy database), up to maxAttempts runs, and while ctx is live. It returns
// op's last error.
func (s *Shop) retry(ctx context.Context, op func() error) error {
	for attempt := 1; ; attempt++ {
		err := op()
		if err == nil || attempt == maxAttempts || s.dialect.IsRetryable == nil || !s.dialect.IsRetryable(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Duration(attempt) * 5 * time.Millisecond):
		}
	}
}

func (s *Shop) placeOnce(ctx context.Context, o Order) (Placed, error) {
	tx, err := s.Orders.h.BeginTx(ctx, nil)
	if err != nil {
		return Placed{}, fmt.Errorf("shop: place order %s: %w", o.ID, err)
	}
	defer tx.Rollback()

	ok, err := s.Users.existsTx(ctx, tx, o.UserID)
	if err != nil {
		return Placed{}, fmt.Errorf("shop: place order %s: %w", o.ID, err)
	}
	var products map[int64]Product
	if ok {
		ids := map[int64]bool{}
		for _, it := range o.Items {
			ids[it.ProductID] = true
		}
		if products, err = s.Products.lockTx(ctx, tx, sortedKeys(ids)); err != nil {
			return Placed{}, fmt.Errorf("shop: place order %s: %w", o.ID, err)
		}
	}
	o, qty := decide(o, ok, products, nil)
	if err := s.Orders.insertManyTx(ctx, tx, []Order{o}, products); err != nil {
		if s.dialect.IsDuplicateKey != nil && s.dialect.IsDuplicateKey(err) {
			tx.Rollback()
			prev, gerr := s.Orders.Get(ctx, o.ID)
			if gerr != nil {
				return Placed{}, fmt.Errorf("shop: place order %s: read the earlier order: %w", o.ID, gerr)
			}
			return Placed{Order: prev, Duplicate: true}, nil
		}
		return Placed{}, fmt.Errorf("shop: place order %s: %w", o.ID, err)
	}
	if o.Status == Accepted {
		if err := s.Products.takeManyTx(ctx, tx, qty); err != nil {
			return Placed{}, fmt.Errorf("shop: place order %s: %w", o.ID, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return Placed{}, fmt.Errorf("shop: place order %s: commit: %w", o.ID, err)
	}
	return Placed{Order: o}, nil
}
