package poolsettest

import (
	"bytes"
	"context"
	"os/exec"
	"testing"
	"time"
)

// CheckMetrics runs `promtool check metrics` on body, a scrape in the
// Prometheus text format, and fails tb when promtool reports a problem
// (a lint message such as a counter without _total, or a parse error).
// It skips tb when promtool is not installed (Debian package prometheus),
// or fails it when POOLSET_REQUIRE_SERVICES=1. It blocks until promtool
// exits, at most a minute.
func CheckMetrics(tb testing.TB, body []byte) {
	tb.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		Skip(tb, "promtool not installed (Debian package prometheus): %v", err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		tb.Errorf("promtool check metrics: %v\n%s\nscrape:\n%s", err, out, body)
	}
}
