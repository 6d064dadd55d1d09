package main

import (
	"strings"
	"testing"

	"github.com/poolset/poolset/poolsettest"
)

// jsonNumber returns the number at path in v, failing t if there is none.
func jsonNumber(t *testing.T, v map[string]any, path ...string) float64 {
	t.Helper()
	var cur any = v
	for _, k := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			t.Fatalf("%s: got %T; want an object", strings.Join(path, "."), cur)
		}
		cur = m[k]
	}
	n, ok := cur.(float64)
	if !ok {
		t.Fatalf("%s: got %v (%T); want a number", strings.Join(path, "."), cur, cur)
	}
	return n
}

func TestMigrateAndSeedIdempotent(t *testing.T) {
	data := t.TempDir()
	steps := []struct {
		name string
		args []string
		// want maps a JSON path, dot-separated, to its wanted number.
		want map[string]float64
	}{
		{"first migrate", []string{"migrate", "--data", data, "--json"}, map[string]float64{"applied": 1}},
		{"second migrate", []string{"migrate", "--data", data, "--json"}, map[string]float64{"applied": 0}},
		{"first seed", []string{"seed", "--data", data, "--users", "50", "--products", "10", "--json"},
			map[string]float64{"seeded.users": 50, "seeded.products": 10}},
		{"second seed", []string{"seed", "--data", data, "--users", "50", "--products", "10", "--json"},
			map[string]float64{"seeded.users": 0, "seeded.products": 0}},
	}
	// The steps share one data directory, in order: no subtest may be
	// skipped or run alone.
	for _, st := range steps {
		r := runPoolset(t, nil, st.args...)
		if r.code != exitOK {
			t.Fatalf("%s: exit code: got %d; want %d\nstderr:\n%s", st.name, r.code, exitOK, r.stderr)
		}
		out := decodeOne(t, r.stdout)
		if out["ok"] != true {
			t.Errorf("%s: ok: got %v; want true", st.name, out["ok"])
		}
		for path, want := range st.want {
			if got := jsonNumber(t, out, strings.Split(path, ".")...); got != want {
				t.Errorf("%s: %s: got %v; want %v", st.name, path, got, want)
			}
		}
	}
}

func TestBenchSharingNeedsMySQL(t *testing.T) {
	t.Run("without --mysql", func(t *testing.T) {
		r := runPoolset(t, nil, "bench", "sharing", "--data", t.TempDir())
		if r.code != exitUsage {
			t.Errorf("exit code: got %d; want %d\nstderr:\n%s", r.code, exitUsage, r.stderr)
		}
		if !strings.Contains(r.stderr, "--mysql") {
			t.Errorf("stderr has no %q:\n%s", "--mysql", r.stderr)
		}
	})

	t.Run("MariaDB", func(t *testing.T) {
		dsn := poolsettest.MySQLDatabase(t, "poolset_t_bench")
		r := runPoolset(t, nil, "bench", "sharing", "--mysql", dsn,
			"--duration", "1s", "--clients", "8", "--users", "100", "--products", "10", "--json")
		if r.code != exitOK {
			t.Fatalf("exit code: got %d; want %d\nstderr:\n%s", r.code, exitOK, r.stderr)
		}
		out := decodeOne(t, r.stdout)
		raw, _ := out["rows"].([]any)
		rows := map[string]map[string]any{}
		for _, x := range raw {
			if row, ok := x.(map[string]any); ok {
				mode, _ := row["mode"].(string)
				rows[mode] = row
			}
		}
		// The per-repository mode opens one pool of --max-open (10) per
		// repository.
		limits := map[string]float64{"shared": 10, "per-repository": 30}
		if len(rows) != len(limits) {
			t.Errorf("rows: got %d modes; want %d", len(rows), len(limits))
		}
		for mode, limit := range limits {
			row, ok := rows[mode]
			if !ok {
				t.Errorf("rows: got no %q row", mode)
				continue
			}
			peak := jsonNumber(t, row, "peak_server_connections")
			if peak <= 0 || peak > limit {
				t.Errorf("%s: peak_server_connections: got %v; want 1..%v", mode, peak, limit)
			}
			if errs := jsonNumber(t, row, "errors"); errs != 0 {
				t.Errorf("%s: errors: got %v; want 0", mode, errs)
			}
			t.Logf("%s: peak server connections %v (limit %v), %.0f ops/s", mode, peak, limit, jsonNumber(t, row, "ops_per_sec"))
		}
	})
}
