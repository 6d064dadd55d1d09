package poolset_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/poolset/poolset"
	"github.com/poolset/poolset/release"
	"github.com/poolset/poolset/sqlite"
)

// One primary pool shared by two repositories, a read pool for user reads,
// and one Close.
func Example() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "poolset-example")
	defer os.RemoveAll(dir)
	primary, read, _ := sqlite.PoolConfigs(filepath.Join(dir, "shop.db"), 2)

	set, err := poolset.Open(ctx, poolset.Config{Primary: primary, Reads: []poolset.PoolConfig{read}})
	if err != nil {
		fmt.Println(err)
		return
	}
	users, orders := set.Handle("users"), set.Handle("orders")
	orders.ExecContext(ctx, "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
	users.ExecContext(ctx, "INSERT INTO users (id, name) VALUES (1, 'ada')")

	var name string
	users.Read().QueryRowContext(ctx, "SELECT name FROM users WHERE id = 1").Scan(&name)
	fmt.Println("read from the read pool:", name)

	_, err = users.Read().QueryContext(ctx, "DELETE FROM users")
	fmt.Println("write through a read handle refused:", err != nil)

	for _, p := range set.Stats() {
		for _, r := range p.Repos {
			fmt.Printf("%s: %s %s, %d queries\n", p.Name, r.Repo, r.Use, r.Queries)
		}
	}
	fmt.Println("close error:", set.Close(ctx))
	for _, p := range set.Stats() {
		fmt.Println(p.Name, "closed:", p.Closed)
	}
	// Output:
	// read from the read pool: ada
	// write through a read handle refused: true
	// primary: users writes, 1 queries
	// primary: orders writes, 1 queries
	// read-1: users reads, 2 queries
	// close error: <nil>
	// primary closed: true
	// read-1 closed: true
}

// A service that holds more than its pools releases them in one ordered
// release of its own: the set's Close is one step, registered the moment
// Open returns, so that it runs after what uses the pools (registered
// later) and before what was opened before them.
func Example_releaseStack() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "poolset-example")
	defer os.RemoveAll(dir)
	primary, read, _ := sqlite.PoolConfigs(filepath.Join(dir, "shop.db"), 2)

	var rel release.Stack
	rel.Add("broker", func(context.Context) error { return nil }) // opened before the pools
	set, err := poolset.Open(ctx, poolset.Config{Primary: primary, Reads: []poolset.PoolConfig{read}})
	if err != nil {
		rel.Release(ctx)
		fmt.Println(err)
		return
	}
	rel.AddTimeout("pools", set.CloseTimeout(), set.Close)
	rel.Add("consumer", func(context.Context) error { return nil }) // writes through the pools

	report, err := rel.Release(ctx)
	for _, st := range report.Steps {
		fmt.Println("released", st.Name, st.Outcome)
	}
	fmt.Println("release error:", err)
	// Output:
	// released consumer ok
	// released pools ok
	// released broker ok
	// release error: <nil>
}
