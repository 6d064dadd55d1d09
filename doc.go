// Package poolset opens each SQL connection pool of a service once, shares
// it among all the repositories that use it, routes the reads that may be
// stale to read pools, and releases everything in one ordered release at
// shutdown.
//
// A Set holds a primary pool and zero or more read pools (replicas, or
// SQLite's read-only pool). Each repository takes a Handle labelled with its
// name; every connection a handle takes is counted against that name, so
// the set can say who holds the pool's connections, who waits and for how
// long (Stats, Tree), and an acquire timeout names the holders instead of
// hanging. Statements on a Handle go to the primary; Handle.Read goes to
// the read pool with the fewest connections in use, falling back to the
// primary (or failing, by policy) when none is usable. Read-pool sessions
// are read-only, so a misrouted write fails instead of writing.
//
// Open registers the release of each pool the moment it opens it; Release
// closes them last-opened first, each within its own timeout, and returns a
// report (package release). Other resources (a cache client, a broker
// connection) join the same release with Register.
//
//	set, err := poolset.Open(ctx, poolset.Config{Primary: primary, Reads: []poolset.PoolConfig{replica}})
//	if err != nil {
//		return err // whatever was opened is already released
//	}
//	defer set.Release(context.WithoutCancel(ctx))
//	users := NewUserRepo(set.Handle("users"))       // writes: primary; reads: replica
//	orders := NewOrderRepo(set.Handle("orders"))    // the same primary pool
//
// Packages mysql and sqlite build PoolConfigs from a DSN or a file path.
package poolset
