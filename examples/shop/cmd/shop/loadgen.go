package main

import (
	"fmt"
	"math/rand/v2"

	"github.com/poolset/poolset/examples/shop/shop"
	"github.com/poolset/poolset/examples/shop/worker"
)

// orderGen makes the orders `load` publishes, deterministically from their
// number, so that `verify` knows which ids to expect.
type orderGen struct {
	Prefix        string // ids are Prefix-N
	Start         int    // the first N
	Users         int    // seeded users 1..Users
	Products      int    // seeded products 1..Products
	UnknownEvery  int    // every k-th order comes from a user who does not exist (0: none)
	RegisterEvery int    // every k-th order comes from a user registered just before it (0: none)
}

// unknownBase and registeredBase put generated user ids far above seeded
// ones.
const (
	unknownBase    = 1_000_000_000
	registeredBase = 2_000_000_000
)

// id returns the id of order n.
func (g orderGen) id(n int) string { return fmt.Sprintf("%s-%d", g.Prefix, n) }

// ids returns the ids of orders Start..Start+count-1.
func (g orderGen) ids(count int) []string {
	out := make([]string, count)
	for i := range out {
		out[i] = g.id(g.Start + i)
	}
	return out
}

// messages returns order n's message, preceded by its user's registration
// when it is one of the registered ones; registered reports that.
func (g orderGen) messages(n int) (msgs []worker.Message, registered bool) {
	rng := rand.New(rand.NewPCG(uint64(n), 0x5eed))
	o := shop.Order{ID: g.id(n), UserID: 1 + rng.Int64N(int64(g.Users))}
	switch {
	case g.UnknownEvery > 0 && n%g.UnknownEvery == 0:
		o.UserID = unknownBase + int64(n)
	case g.RegisterEvery > 0 && n%g.RegisterEvery == 0:
		o.UserID = registeredBase + int64(n)
		u := shop.User{ID: o.UserID, Email: fmt.Sprintf("new-%d@example.com", n), Name: fmt.Sprintf("new-%d", n)}
		msgs = append(msgs, worker.Message{Subject: worker.SubjectUserRegistered, ID: fmt.Sprintf("u-%s", o.ID), Data: worker.EncodeUser(u)})
		registered = true
	}
	for range 1 + rng.IntN(3) {
		o.Items = append(o.Items, shop.Item{ProductID: 1 + rng.Int64N(int64(g.Products)), Qty: 1 + rng.Int64N(5)})
	}
	msgs = append(msgs, worker.Message{Subject: worker.SubjectOrderPlaced, ID: o.ID, Data: worker.EncodeOrder(o)})
	return msgs, registered
}
