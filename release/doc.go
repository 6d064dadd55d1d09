// Package release runs the release of a set of resources in a fixed order,
// with a bounded time for each step and for the whole.
//
// It owns the order, the timeouts and the report; it does not own the
// resources, and knows nothing of pools, brokers or caches: each step is a
// function its caller registers (a pool set's Close, a client's Close).
// Package poolset does not use it; a service that has more to release than
// its pools does.
//
// A resource's release is registered on a [Stack] the moment the resource is
// acquired, so a constructor that fails half-way releases exactly what it
// opened, and a program that shuts down releases everything it holds:
//
//	var rel release.Stack
//
//	db, err := sql.Open("mysql", dsn)
//	if err != nil {
//		return err
//	}
//	rel.AddCloser("mysql", db)
//
//	rdb := redis.NewClient(opts)
//	rel.AddTimeout("redis", 2*time.Second, func(ctx context.Context) error {
//		return rdb.Close()
//	})
//
//	// ... on shutdown:
//	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
//	defer cancel()
//	report, err := rel.Release(ctx)
//	fmt.Fprint(os.Stderr, report)
//	return err
//
// [Stack.Release] runs the steps last-in first-out, each with its own timeout
// ([DefaultTimeout] unless set with [Stack.AddTimeout]) inside the deadline of
// the context passed to Release. A step that fails, panics or times out never
// stops the steps after it, and Release never skips a step: when the deadline
// has passed, every remaining step is still started, with a context that is
// already done. Release returns once every step has finished or timed out, so
// it never waits much past the context's deadline, and it returns the same
// result to every caller.
//
// The [Report] it returns lists each step's name, outcome and duration; it
// prints as an aligned table and marshals to JSON, for logs and health
// endpoints:
//
//	#  STEP             OUTCOME  DURATION  TIMEOUT  ERROR
//	1  redis            ok       1.2ms     5s
//	2  pool replica-1   ok       3.1ms     5s
//	3  pool primary     timeout  2s        2s       timed out after 2s
//	released 3 steps in 2.005s: 2 ok, 1 timeout
package release
