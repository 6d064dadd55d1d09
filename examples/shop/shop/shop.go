// Package shop is poolset's example domain: users, products and orders,
// stored through three repositories that share one primary pool, with user
// reads on the read pool and product details cached. It is the seed
// service's createRepos in Go. It owns the schema (migrations), the rules
// of placing an order (all or nothing, idempotent by id), the seed, the
// mixed load and the checks of verify.
//
// It does not open or close a pool (the command opens the pool set once
// and hands it to New), hold a cache client (ProductCache is an interface,
// implemented on Redis by package productcache), or read messages
// (package worker decodes them and calls a *Shop as its worker.Store).
package shop

import (
	"context"
	"errors"
	"fmt"

	"github.com/poolset/poolset"
)

var (
	// ErrUserNotFound is returned when no user has the id.
	ErrUserNotFound = errors.New("shop: user not found")
	// ErrProductNotFound is returned when no product has the id.
	ErrProductNotFound = errors.New("shop: product not found")
	// ErrOrderNotFound is returned when no order has the id.
	ErrOrderNotFound = errors.New("shop: order not found")
	// ErrInvalidOrder is wrapped by every validation error of an order.
	ErrInvalidOrder = errors.New("shop: invalid order")
)

// User is a customer.
type User struct {
	ID    int64  `json:"id"`
	Email string `json:"email"`
	Name  string `json:"name"`
}

// Product is something for sale, with its stock.
type Product struct {
	ID         int64  `json:"id"`
	Name       string `json:"name"`
	PriceCents int64  `json:"price_cents"`
	Stock      int64  `json:"stock"`
}

// ProductDetails is the part of a product that may be cached: never the
// stock.
type ProductDetails struct {
	ID         int64  `json:"id"`
	Name       string `json:"name"`
	PriceCents int64  `json:"price_cents"`
}

// Status is an order's state once placed.
type Status string

// The statuses of a placed order.
const (
	Accepted Status = "accepted"
	Rejected Status = "rejected"
)

// Item is one line of an order.
type Item struct {
	ProductID int64 `json:"product_id"`
	Qty       int64 `json:"qty"`
}

// Order is a request to buy items. Its ID is the idempotency key: placing
// an ID twice has no second effect.
type Order struct {
	ID         string `json:"id"`
	UserID     int64  `json:"user_id"`
	Items      []Item `json:"items"`
	Status     Status `json:"status,omitempty"`
	Reason     string `json:"reason,omitempty"`
	TotalCents int64  `json:"total_cents,omitempty"`
}

// Limits of a valid order.
const (
	MaxOrderIDLen = 64
	MaxItems      = 100
	MaxQty        = 1_000_000
)

// Validate checks what can be checked without the database: an id of 1 to
// 64 characters, a positive user id, 1 to 100 items, each with a positive
// product id and a quantity from 1 to 1,000,000. Errors wrap
// ErrInvalidOrder.
func (o Order) Validate() error {
	switch {
	case o.ID == "":
		return fmt.Errorf("%w: missing id", ErrInvalidOrder)
	case len(o.ID) > MaxOrderIDLen:
		return fmt.Errorf("%w: id longer than %d bytes", ErrInvalidOrder, MaxOrderIDLen)
	case o.UserID <= 0:
		return fmt.Errorf("%w: user_id must be positive", ErrInvalidOrder)
	case len(o.Items) == 0:
		return fmt.Errorf("%w: no items", ErrInvalidOrder)
	case len(o.Items) > MaxItems:
		return fmt.Errorf("%w: more than %d items", ErrInvalidOrder, MaxItems)
	}
	for i, it := range o.Items {
		if it.ProductID <= 0 {
			return fmt.Errorf("%w: item %d: product_id must be positive", ErrInvalidOrder, i)
		}
		if it.Qty <= 0 || it.Qty > MaxQty {
			return fmt.Errorf("%w: item %d: qty must be from 1 to %d", ErrInvalidOrder, i, MaxQty)
		}
	}
	return nil
}

// Dialect is what differs between the SQL backends. Packages mysql,
// postgres and sqlite provide the predicates; cmd/shop wires them. The
// statements are written once, with ? placeholders; the few that differ
// ask the dialect (see dialect.go).
type Dialect struct {
	// Name is "mysql", "postgres" or "sqlite".
	Name string
	// IsDuplicateKey reports a primary-key violation.
	IsDuplicateKey func(error) bool
	// IsRetryable reports an error after which a transaction may be run
	// again (deadlock, lock timeout, busy database, lost connection).
	IsRetryable func(error) bool
}

// ProductCache caches product details. Implementations must not fail the
// caller: a cache that cannot answer reports a miss.
type ProductCache interface {
	GetProduct(ctx context.Context, id int64) (ProductDetails, bool)
	SetProduct(ctx context.Context, d ProductDetails)
	DeleteProduct(ctx context.Context, id int64)
}

// Shop is the three repositories over one set of pools, and the operations
// that span them.
type Shop struct {
	Users    *UserRepo
	Products *ProductRepo
	Orders   *OrderRepo
	dialect  Dialect
}

// New builds the repositories on set: users write to the primary and read
// from the read pool; products and orders use the primary. cache may be nil
// (no cache). It opens nothing: the pools are set's.
func New(set *poolset.Set, d Dialect, cache ProductCache) *Shop {
	return Compose(set.Handle("users"), set.Handle("products"), set.Handle("orders"), d, cache)
}

// Ping checks that the primary, where orders are placed, answers. It
// blocks at most the primary pool's AcquireTimeout, or until ctx is done.
func (s *Shop) Ping(ctx context.Context) error { return s.Orders.h.PingContext(ctx) }

// Interrupt ends the statements running now on the primary pool without
// closing their connections (see poolset.Pool.Interrupt), and returns how
// many it ended: each fails, and its transaction rolls back.
func (s *Shop) Interrupt(ctx context.Context) (int, error) { return s.Orders.h.Interrupt(ctx) }

// Compose builds the repositories on the given handles, which may come
// from different sets (as the sharing benchmark does to compare one pool
// per repository with one shared pool). cache may be nil.
func Compose(users, products, orders *poolset.Handle, d Dialect, cache ProductCache) *Shop {
	return &Shop{
		Users:    NewUserRepo(users, d),
		Products: NewProductRepo(products, d, cache),
		Orders:   NewOrderRepo(orders, d),
		dialect:  d,
	}
}
