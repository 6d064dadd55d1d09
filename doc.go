// Package poolset opens each SQL connection pool of a service once, shares
// it among all the repositories that use it, routes the reads that may be
// stale to read pools, and closes the pools in one call.
//
// A Set holds a primary pool and zero or more read pools (replicas, or
// SQLite's read-only pool). Each repository takes a Handle labelled with its
// name; every connection a handle takes is counted against that name, so
// the set can say who holds the pool's connections, who waits and for how
// long (Stats, Tree), and an acquire timeout names the holders instead of
// hanging. Statements on a Handle go to the primary; Handle.Read goes to
// the read pool with the fewest connections in use, falling back to the
// primary (or failing, by policy) when none is usable. Read-pool sessions
// are read-only, so a misrouted write fails instead of writing. A read
// pool's HealthCheck takes it out of the rotation while its server is
// down or behind; Positions let reads under ReadYourWrites see the writes
// before them.
//
// The set is shaped like a *sql.DB: Open it once, share it, Close it once.
// If Open fails it has already closed what it opened. Close closes the read
// pools, then the primary, each within its CloseWait, and names whatever
// was still held:
//
//	set, err := poolset.Open(ctx, poolset.Config{Primary: primary, Reads: []poolset.PoolConfig{replica}})
//	if err != nil {
//		return err // nothing is left open
//	}
//	defer set.Close(context.WithoutCancel(ctx))
//	users := NewUserRepo(set.Handle("users"))       // writes: primary; reads: replica
//	orders := NewOrderRepo(set.Handle("orders"))    // the same primary pool
//
// A service with other resources (a cache client, a broker connection)
// orders their release itself, for example with package release, and
// registers the set's Close there the moment Open returns:
//
//	rel.AddTimeout("pools", set.CloseTimeout(), set.Close)
//
// Packages mysql and sqlite build PoolConfigs from a DSN or a file path;
// package metrics exports a set's figures to Prometheus. This package owns
// the pools, their attribution, routing, health and close; it does not
// own a driver, a schema, migrations, or the order in which a service
// releases its other resources.
package poolset
