package main

import (
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/poolset/poolset/poolsettest"
)

func TestDemoEmbedded(t *testing.T) {
	t.Run("text", func(t *testing.T) {
		r := runPoolset(t, nil, "demo", "--data", t.TempDir(), "--duration", "1s")
		if r.code != exitOK {
			t.Fatalf("exit code: got %d; want %d\nstderr:\n%s", r.code, exitOK, r.stderr)
		}
		for _, want := range []string{
			"primary (sqlite)", "read-1 (sqlite, read-only)",
			"users", "orders", "products",
			"STEP", "OUTCOME",
		} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("stdout has no %q:\n%s", want, r.stdout)
			}
		}
		// The release table has the set's pools closed ok.
		if !regexp.MustCompile(`(?m)^\s*\d+\s+pools\s+ok\s`).MatchString(r.stdout) {
			t.Errorf("stdout has no release row \"pools ok\":\n%s", r.stdout)
		}
		// Each repository appears as a branch of the tree.
		for _, repo := range []string{"users", "orders", "products"} {
			found := false
			for _, line := range nonEmptyLines(r.stdout) {
				if (strings.HasPrefix(line, "├─ ") || strings.HasPrefix(line, "└─ ")) && strings.Fields(line)[1] == repo {
					found = true
				}
			}
			if !found {
				t.Errorf("pools tree: got no branch for repository %q; want one\n%s", repo, r.stdout)
			}
		}
	})

	t.Run("json", func(t *testing.T) {
		r := runPoolset(t, nil, "demo", "--data", t.TempDir(), "--duration", "1s", "--json")
		if r.code != exitOK {
			t.Fatalf("exit code: got %d; want %d\nstderr:\n%s", r.code, exitOK, r.stderr)
		}
		sum := decodeOne(t, r.stdout)
		if got := sum["ok"]; got != true {
			t.Errorf("ok: got %v; want true", got)
		}
		pools, _ := sum["pools"].([]any)
		if got := len(pools); got != 2 {
			t.Errorf("pools: got %d entries; want 2", got)
		}
		steps := jsonSteps(t, sum)
		if len(steps) == 0 {
			t.Errorf("release.steps: got 0 entries; want at least 1")
		}
		for i, st := range steps {
			if st["outcome"] != "ok" {
				t.Errorf("release.steps[%d] (%v): got outcome %v; want ok", i, st["name"], st["outcome"])
			}
		}
		load, _ := sum["load"].(map[string]any)
		if ops, _ := load["ops"].(float64); ops <= 0 {
			t.Errorf("load.ops: got %v; want > 0", load["ops"])
		}
		for _, line := range nonEmptyLines(r.stderr) {
			if strings.HasPrefix(strings.TrimSpace(line), "{") {
				t.Errorf("stderr has a JSON line: %s", line)
			}
		}
		t.Logf("embedded demo: %v ops", load["ops"])
	})
}

// decodeOne decodes s as exactly one JSON object.
func decodeOne(t *testing.T, s string) map[string]any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(s))
	var v map[string]any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("stdout is not a JSON object: %v\n%s", err, s)
	}
	var extra any
	if err := dec.Decode(&extra); err == nil {
		t.Fatalf("stdout: got more than one JSON value; want one\n%s", s)
	}
	return v
}

// jsonSteps returns release.steps of a decoded summary.
func jsonSteps(t *testing.T, sum map[string]any) []map[string]any {
	t.Helper()
	rel, ok := sum["release"].(map[string]any)
	if !ok {
		t.Fatalf("release: got %T; want an object", sum["release"])
	}
	raw, _ := rel["steps"].([]any)
	var steps []map[string]any
	for _, s := range raw {
		m, _ := s.(map[string]any)
		steps = append(steps, m)
	}
	return steps
}

func TestDemoMariaDBRedisServerSide(t *testing.T) {
	poolsettest.LockServer(t, poolsettest.SharedServers)
	const dbName = "poolset_t_demo"
	dsn := poolsettest.MySQLDatabase(t, dbName)
	redisURL := poolsettest.RedisURL(t)
	admin := adminDB(t)
	redisClients := redisClientCounter(t, redisURL)

	// The baselines count the admin connection and the Redis client above,
	// both still open at the end.
	threads0 := poolsettest.Steady(func() int64 { return globalStatus(t, admin, "Threads_connected") })
	aborted0 := poolsettest.Steady(func() int64 { return globalStatus(t, admin, "Aborted_clients") })
	redis0 := poolsettest.Steady(redisClients)

	const maxOpen = 10
	ctx, cancel := context.WithTimeout(t.Context(), runTimeout)
	defer cancel()
	cmd, stdout, stderr := command(t, ctx, nil, "demo",
		"--mysql", dsn, "--replica", dsn, "--redis", redisURL,
		"--clients", "32", "--duration", "2s", "--max-open", "10", "--json")
	stop := peakSampler(admin, dbName)
	runErr := cmd.Run()
	peak := stop()
	r := finish(t, runErr, stdout, stderr)
	if r.code != exitOK {
		t.Fatalf("exit code: got %d; want %d\nstderr:\n%s", r.code, exitOK, r.stderr)
	}
	sum := decodeOne(t, r.stdout)
	if got := sum["ok"]; got != true {
		t.Errorf("ok: got %v; want true", got)
	}
	if pools, _ := sum["pools"].([]any); len(pools) != 2 {
		t.Errorf("pools: got %d entries; want 2 (primary and the replica)", len(pools))
	}
	if sum["cache"] == nil {
		t.Errorf("cache: got null; want the Redis cache's counters")
	}

	// Two pools of --max-open each: the primary and the read-only replica.
	if peak <= 0 || peak > 2*maxOpen {
		t.Errorf("peak server connections to %s: got %d; want 1..%d", dbName, peak, 2*maxOpen)
	}

	var threads, aborted, redisN int64
	threadsBack := eventually(5*time.Second, func() bool {
		threads = globalStatus(t, admin, "Threads_connected")
		return threads <= threads0
	})
	aborted = globalStatus(t, admin, "Aborted_clients")
	redisBack := eventually(5*time.Second, func() bool {
		redisN = redisClients()
		return redisN <= redis0
	})
	left := connectionsTo(t, admin, dbName, 5*time.Second)
	t.Logf("peak connections to %s: %d (limit %d); Threads_connected %d -> %d; Aborted_clients %d -> %d; Redis connected_clients %d -> %d",
		dbName, peak, 2*maxOpen, threads0, threads, aborted0, aborted, redis0, redisN)
	if !threadsBack {
		t.Errorf("Threads_connected after exit: got %d; want %d (the baseline)", threads, threads0)
	}
	if aborted != aborted0 {
		t.Errorf("Aborted_clients: got %d; want %d (unchanged: every connection closed cleanly)", aborted, aborted0)
	}
	if left != 0 {
		t.Errorf("connections to %s after exit: got %d; want 0", dbName, left)
	}
	if !redisBack {
		t.Errorf("Redis connected_clients after exit: got %d; want %d (the baseline)", redisN, redis0)
	}
}
