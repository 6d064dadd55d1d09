package poolsettest_test

import (
	"context"
	"testing"
	"time"

	"github.com/poolset/poolset/poolsettest"
)

// TestPostgresPair: a primary and a standby start, the standby streams and
// replays the primary's writes, and comes back streaming after SIGKILL and
// Start; a paused replay holds writes back until resumed.
func TestPostgresPair(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	p := poolsettest.PostgresPair(t, "shop", 1)
	t.Logf("PostgresPair with 1 standby took %v", time.Since(start).Round(time.Millisecond))
	s := p.Standbys[0]
	if p.Primary.Pid() == 0 || s.Pid() == 0 {
		t.Fatalf("pids: primary %d, standby %d; want both running", p.Primary.Pid(), s.Pid())
	}
	if err := p.Primary.Exec(ctx, "CREATE TABLE t (id int)", "INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	count := func() int {
		t.Helper()
		var n int
		if err := s.QueryRow(ctx, "SELECT count(*) FROM t", &n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if err := p.WaitCaughtUp(ctx, s); err != nil {
		t.Fatal(err)
	}
	if got := count(); got != 1 {
		t.Fatalf("rows on the standby: got %d; want 1", got)
	}
	if err := s.PauseReplay(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.Primary.Exec(ctx, "INSERT INTO t VALUES (2)"); err != nil {
		t.Fatal(err)
	}
	short, c2 := context.WithTimeout(ctx, 300*time.Millisecond)
	err := p.WaitCaughtUp(short, s)
	c2()
	if err == nil || count() != 1 {
		t.Fatalf("paused replay: wait got %v, rows %d; want a timeout and 1 row", err, count())
	}
	if err := s.ResumeReplay(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.WaitCaughtUp(ctx, s); err != nil || count() != 2 {
		t.Fatalf("resumed replay: %v, rows %d; want 2", err, count())
	}
	if err := s.Kill(); err != nil {
		t.Fatal(err)
	}
	if s.Running() || s.Pid() != 0 {
		t.Fatal("killed standby still running")
	}
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitStreaming(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.Primary.Exec(ctx, "INSERT INTO t VALUES (3)"); err != nil {
		t.Fatal(err)
	}
	if err := p.WaitCaughtUp(ctx, s); err != nil || count() != 3 {
		t.Fatalf("restarted standby: %v, rows %d; want 3", err, count())
	}
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	if p.Primary.Running() || s.Running() {
		t.Error("running after Stop")
	}
}
