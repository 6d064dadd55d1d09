package release_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/poolset/poolset/release"
)

// sample is a report built by hand, so its table is known exactly.
func sample() *release.Report {
	return &release.Report{
		Duration: 2010*time.Millisecond + 432*time.Microsecond,
		Steps: []release.Step{
			{Name: "redis", Outcome: release.OK, Duration: 1234567 * time.Nanosecond, Timeout: 5 * time.Second},
			{Name: "pool replica-1", Outcome: release.Failed, Duration: 3100 * time.Microsecond, Timeout: 5 * time.Second,
				Err: errors.New("close: connection reset\nby peer")},
			{Name: "pool primary", Outcome: release.TimedOut, Duration: 2000400 * time.Microsecond, Timeout: 2 * time.Second,
				Err: errors.New("timed out after 2s")},
			{Name: "nats", Outcome: release.OK, Duration: 42 * time.Microsecond, Timeout: time.Second},
		},
	}
}

func TestReportString(t *testing.T) {
	tests := []struct {
		name   string
		report *release.Report
		want   string
	}{
		{
			name:   "steps",
			report: sample(),
			want: "" +
				"#  STEP            OUTCOME  DURATION  TIMEOUT  ERROR\n" +
				"1  redis           ok       1.2ms     5s\n" +
				"2  pool replica-1  failed   3.1ms     5s       close: connection reset; by peer\n" +
				"3  pool primary    timeout  2s        2s       timed out after 2s\n" +
				"4  nats            ok       42µs      1s\n" +
				"released 4 steps in 2.01s: 2 ok, 1 failed, 1 timeout\n",
		},
		{
			name:   "one step",
			report: &release.Report{Duration: 300 * time.Microsecond, Steps: []release.Step{{Name: "a", Outcome: release.OK, Timeout: time.Second}}},
			want: "" +
				"#  STEP  OUTCOME  DURATION  TIMEOUT  ERROR\n" +
				"1  a     ok       0s        1s\n" +
				"released 1 step in 300µs: 1 ok\n",
		},
		{
			name:   "empty",
			report: &release.Report{},
			want: "" +
				"#  STEP  OUTCOME  DURATION  TIMEOUT  ERROR\n" +
				"released 0 steps in 0s\n",
		},
		{
			name:   "nil",
			report: nil,
			want:   "release: nothing to release\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.report.String(); got != tt.want {
				t.Errorf("String() =\n%s\nwant\n%s", got, tt.want)
			}
			var buf bytes.Buffer
			n, err := tt.report.WriteTo(&buf)
			if err != nil {
				t.Fatalf("WriteTo: %v", err)
			}
			if got := buf.String(); got != tt.want || n != int64(len(tt.want)) {
				t.Errorf("WriteTo wrote %d bytes %q; want %d bytes %q", n, got, len(tt.want), tt.want)
			}
		})
	}
}

// TestReportStringFromRelease checks the table of a real release, whose
// durations vary, by its header, step names and outcomes.
func TestReportStringFromRelease(t *testing.T) {
	var s release.Stack
	s.Add("redis", func(context.Context) error { return nil })
	s.Add("pool primary", func(context.Context) error { return errors.New("still in use") })
	r, _ := s.Release(context.Background())

	got := fmt.Sprint(r)
	for _, want := range []string{
		"#  STEP", "OUTCOME", "DURATION", "TIMEOUT", "ERROR",
		"1  pool primary  failed", "still in use",
		"2  redis         ok",
		"released 2 steps in ", ": 1 ok, 1 failed",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("table does not contain %q:\n%s", want, got)
		}
	}
	for line := range strings.Lines(got) {
		if strings.TrimRight(line, " \n") != strings.TrimSuffix(line, "\n") {
			t.Errorf("line %q has trailing spaces", line)
		}
	}
}

func TestReportJSON(t *testing.T) {
	b, err := json.Marshal(sample())
	if err != nil {
		t.Fatalf("json.Marshal: %v", err)
	}
	var got struct {
		DurationMS *float64 `json:"duration_ms"`
		OK         *bool    `json:"ok"`
		Steps      []map[string]any
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("json.Unmarshal(%s): %v", b, err)
	}
	if got.DurationMS == nil || *got.DurationMS != 2010.432 {
		t.Errorf("duration_ms = %v; want 2010.432 (JSON %s)", got.DurationMS, b)
	}
	if got.OK == nil || *got.OK {
		t.Errorf("ok = %v; want false", got.OK)
	}
	if len(got.Steps) != 4 {
		t.Fatalf("got %d steps; want 4 (JSON %s)", len(got.Steps), b)
	}

	tests := []struct {
		i    int
		want map[string]any
	}{
		{0, map[string]any{"name": "redis", "outcome": "ok", "duration_ms": 1.235, "timeout_ms": 5000.0}},
		{1, map[string]any{"name": "pool replica-1", "outcome": "failed", "duration_ms": 3.1, "timeout_ms": 5000.0,
			"error": "close: connection reset\nby peer"}},
		{2, map[string]any{"name": "pool primary", "outcome": "timeout", "duration_ms": 2000.4, "timeout_ms": 2000.0,
			"error": "timed out after 2s"}},
		{3, map[string]any{"name": "nats", "outcome": "ok", "duration_ms": 0.042, "timeout_ms": 1000.0}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.want["name"]), func(t *testing.T) {
			step := got.Steps[tt.i]
			if len(step) != len(tt.want) {
				t.Errorf("step has fields %v; want %v", step, tt.want)
			}
			for k, want := range tt.want {
				if step[k] != want {
					t.Errorf("%s = %v; want %v", k, step[k], want)
				}
			}
		})
	}

	t.Run("all ok", func(t *testing.T) {
		var s release.Stack
		s.Add("a", func(context.Context) error { return nil })
		r, _ := s.Release(context.Background())
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatalf("json.Marshal: %v", err)
		}
		if got, want := string(b), `"ok":true`; !strings.Contains(got, want) {
			t.Errorf("JSON %s; want it to contain %s", got, want)
		}
		if strings.Contains(string(b), `"error"`) {
			t.Errorf("JSON %s has an error field; want it omitted", b)
		}
	})
	t.Run("nil", func(t *testing.T) {
		var r *release.Report
		b, err := json.Marshal(r)
		if err != nil || string(b) != "null" {
			t.Errorf("json.Marshal(nil report) = %s, %v; want null, nil", b, err)
		}
	})
}

func TestReportErrAndFailed(t *testing.T) {
	r := sample()
	err := r.Err()
	want := "" +
		"release: step \"pool replica-1\": close: connection reset\nby peer\n" +
		"release: step \"pool primary\": timed out after 2s"
	if err == nil || err.Error() != want {
		t.Errorf("Err() = %q; want %q", err, want)
	}
	var names []string
	for _, st := range r.Failed() {
		names = append(names, st.Name)
	}
	if got, want := strings.Join(names, ","), "pool replica-1,pool primary"; got != want {
		t.Errorf("Failed() names %q; want %q", got, want)
	}

	var nilReport *release.Report
	if err := nilReport.Err(); err != nil {
		t.Errorf("nil Report Err() = %v; want nil", err)
	}
	if got := nilReport.Failed(); got != nil {
		t.Errorf("nil Report Failed() = %v; want nil", got)
	}
}
