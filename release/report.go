package release

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// Outcome is how a step ended.
type Outcome string

// The outcomes of a step.
const (
	OK       Outcome = "ok"      // returned nil
	Failed   Outcome = "failed"  // returned an error or panicked
	TimedOut Outcome = "timeout" // still running when its timeout or the overall deadline passed
)

// Step is the record of one release step.
//
// Its JSON form is
//
//	{"name":"redis","outcome":"failed","duration_ms":1.2,"timeout_ms":5000,"error":"..."}
//
// with "error" omitted when Err is nil.
type Step struct {
	Name     string        `json:"name"`
	Outcome  Outcome       `json:"outcome"`
	Duration time.Duration `json:"-"` // from the start of the step until it returned or timed out
	Timeout  time.Duration `json:"-"` // the step's own timeout
	Err      error         `json:"-"` // nil when Outcome is OK; unwraps to context.DeadlineExceeded (or the cause of the release context) when TimedOut
}

// MarshalJSON implements [json.Marshaler].
func (st Step) MarshalJSON() ([]byte, error) {
	v := struct {
		Name       string  `json:"name"`
		Outcome    Outcome `json:"outcome"`
		DurationMS float64 `json:"duration_ms"`
		TimeoutMS  float64 `json:"timeout_ms"`
		Error      string  `json:"error,omitempty"`
	}{
		Name:       st.Name,
		Outcome:    st.Outcome,
		DurationMS: millis(st.Duration),
		TimeoutMS:  millis(st.Timeout),
	}
	if st.Err != nil {
		v.Error = st.Err.Error()
	}
	return json.Marshal(v)
}

// Report is the record of a [Stack.Release]. A Report is not modified after
// Release returns it, so it may be read by multiple goroutines.
type Report struct {
	Steps    []Step        // in the order they ran: last registered first
	Duration time.Duration // of the whole release
}

// Err returns the errors.Join of the errors of the steps whose outcome is not
// [OK], each wrapped as
//
//	release: step "NAME": <error>
//
// (for a timeout: release: step "NAME": timed out after 5s). It returns nil
// when every step succeeded, and for a nil Report.
func (r *Report) Err() error {
	if r == nil {
		return nil
	}
	var errs []error
	for _, st := range r.Steps {
		if st.Outcome == OK {
			continue
		}
		err := st.Err
		if err == nil {
			err = errors.New(string(st.Outcome))
		}
		errs = append(errs, fmt.Errorf("release: step %q: %w", st.Name, err))
	}
	return errors.Join(errs...)
}

// Failed returns the steps whose outcome is not [OK], in the order they ran.
func (r *Report) Failed() []Step {
	if r == nil {
		return nil
	}
	var failed []Step
	for _, st := range r.Steps {
		if st.Outcome != OK {
			failed = append(failed, st)
		}
	}
	return failed
}

// String returns the report as an aligned table, one row per step in the
// order they ran, followed by a summary line. A nil Report prints as
// "release: nothing to release".
func (r *Report) String() string {
	if r == nil {
		return "release: nothing to release\n"
	}
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "#\tSTEP\tOUTCOME\tDURATION\tTIMEOUT\tERROR")
	for i, st := range r.Steps {
		var msg string
		if st.Err != nil {
			msg = oneLine(st.Err.Error())
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n",
			i+1, oneLine(st.Name), st.Outcome, round(st.Duration), st.Timeout, msg)
	}
	tw.Flush()

	// tabwriter pads every cell of a column, including the last one of a
	// row with no error; drop that trailing padding.
	var out strings.Builder
	for line := range strings.Lines(buf.String()) {
		out.WriteString(strings.TrimRight(line, " \n"))
		out.WriteByte('\n')
	}
	out.WriteString(r.summary())
	out.WriteByte('\n')
	return out.String()
}

// summary returns the last line of the table, such as
// "released 3 steps in 2.01s: 2 ok, 1 timeout".
func (r *Report) summary() string {
	n := len(r.Steps)
	noun := "steps"
	if n == 1 {
		noun = "step"
	}
	s := fmt.Sprintf("released %d %s in %s", n, noun, round(r.Duration))
	var counts []string
	for _, o := range []Outcome{OK, Failed, TimedOut} {
		c := 0
		for _, st := range r.Steps {
			if st.Outcome == o {
				c++
			}
		}
		if c > 0 {
			counts = append(counts, fmt.Sprintf("%d %s", c, o))
		}
	}
	if len(counts) > 0 {
		s += ": " + strings.Join(counts, ", ")
	}
	return s
}

// WriteTo writes the table returned by [Report.String] to w. It implements
// [io.WriterTo].
func (r *Report) WriteTo(w io.Writer) (int64, error) {
	n, err := io.WriteString(w, r.String())
	return int64(n), err
}

// MarshalJSON implements [json.Marshaler]. The JSON form is
//
//	{"duration_ms":2010.5,"ok":false,"steps":[...]}
//
// where ok is true when every step succeeded and steps holds each [Step] in
// the order they ran. A nil Report marshals as null.
func (r *Report) MarshalJSON() ([]byte, error) {
	if r == nil {
		return []byte("null"), nil
	}
	steps := r.Steps
	if steps == nil {
		steps = []Step{}
	}
	return json.Marshal(struct {
		DurationMS float64 `json:"duration_ms"`
		OK         bool    `json:"ok"`
		Steps      []Step  `json:"steps"`
	}{
		DurationMS: millis(r.Duration),
		OK:         len(r.Failed()) == 0,
		Steps:      steps,
	})
}

// millis returns d in milliseconds, to the microsecond.
func millis(d time.Duration) float64 {
	return float64(d.Round(time.Microsecond)) / float64(time.Millisecond)
}

// round rounds d for display: to the microsecond under 1ms, to 0.1ms under
// 1s, and to the millisecond above.
func round(d time.Duration) time.Duration {
	switch {
	case d < time.Millisecond:
		return d.Round(time.Microsecond)
	case d < time.Second:
		return d.Round(100 * time.Microsecond)
	default:
		return d.Round(time.Millisecond)
	}
}

// oneLine replaces the line breaks and tabs of s, which would break the
// table, with "; " and spaces.
func oneLine(s string) string {
	if !strings.ContainsAny(s, "\t\r\n") {
		return s
	}
	s = strings.ReplaceAll(s, "\r\n", "\n")
	s = strings.ReplaceAll(s, "\n", "; ")
	s = strings.ReplaceAll(s, "\r", "; ")
	return strings.ReplaceAll(s, "\t", " ")
}
