package worker

import (
	"context"

	"github.com/poolset/poolset/examples/shop/shop"
)

// Store is where the worker writes: the shop's database. *shop.Shop
// implements it on the shared primary pool. Its methods must be safe for
// concurrent use.
//
// The worker tells the kinds of failure apart by what they wrap and by a
// ping after the failure, never by the error's text: an error wrapping
// poolset.ErrAcquireTimeout (a busy pool) is run again without spending a
// delivery; any other error after which Ping fails is an outage, and the
// message is held until Ping answers again; any other error is the
// message's, which is nak'ed for a retry and dead-lettered on its last
// delivery.
type Store interface {
	// PlaceOrder places one valid order in a transaction of its own and
	// returns what was stored: accepted, rejected (an unknown user, not
	// enough stock), or the earlier order with Duplicate set when the id
	// was placed before.
	PlaceOrder(ctx context.Context, o shop.Order) (shop.Placed, error)
	// PlaceOrders places a group of valid orders in one transaction, each
	// order still all or nothing, and returns one Placed per order, in
	// order. On error nothing is stored, and the worker places the
	// orders one by one.
	PlaceOrders(ctx context.Context, orders []shop.Order) ([]shop.Placed, error)
	// RegisterUsers stores users in one statement, updating those whose
	// id exists.
	RegisterUsers(ctx context.Context, users []shop.User) error
	// Ping checks that the database where orders are placed answers. The
	// worker pings after a failure, and when nothing has settled for a
	// while, to tell an outage from a failed statement.
	Ping(ctx context.Context) error
	// Interrupt ends the statements running now on the store's pool,
	// without closing their connections, and returns how many it ended:
	// each fails, and its transaction rolls back. The worker calls it when
	// the drain is cut short. It returns an error wrapping
	// poolset.ErrInterruptUnsupported when the pool cannot interrupt; the
	// worker then cancels the statements' contexts instead.
	Interrupt(ctx context.Context) (int, error)
}
