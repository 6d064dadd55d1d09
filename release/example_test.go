package release_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/poolset/poolset/release"
)

func ExampleStack() {
	var rel release.Stack

	// Register each release as soon as its resource is acquired.
	rel.Add("pool primary", func(ctx context.Context) error {
		fmt.Println("closing pool primary")
		return nil
	})
	rel.AddTimeout("pool replica-1", 2*time.Second, func(ctx context.Context) error {
		fmt.Println("closing pool replica-1")
		return errors.New("connection reset")
	})
	rel.Add("redis", func(ctx context.Context) error {
		fmt.Println("closing redis")
		return nil
	})

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	report, err := rel.Release(ctx)

	for i, st := range report.Steps {
		fmt.Printf("%d %s: %s (timeout %v)\n", i+1, st.Name, st.Outcome, st.Timeout)
	}
	fmt.Println(err)
	// Output:
	// closing redis
	// closing pool replica-1
	// closing pool primary
	// 1 redis: ok (timeout 5s)
	// 2 pool replica-1: failed (timeout 2s)
	// 3 pool primary: ok (timeout 5s)
	// release: step "pool replica-1": connection reset
}

func ExampleStack_Release_idempotent() {
	var rel release.Stack
	rel.Add("db", func(context.Context) error {
		fmt.Println("closing db")
		return nil
	})

	r1, _ := rel.Release(context.Background())
	r2, _ := rel.Release(context.Background())
	fmt.Println(r1 == r2, len(r1.Steps), rel.Released())
	// Output:
	// closing db
	// true 1 true
}
