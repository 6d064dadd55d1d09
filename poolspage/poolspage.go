package poolspage

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"html/template"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/poolset/poolset"
	"github.com/poolset/poolset/release"
)

//go:embed page.html
var pageHTML string

var pageTmpl = template.Must(template.New("page").Parse(pageHTML))

// Options configure a Page. The zero value is ready to use.
type Options struct {
	// Title heads the page and its JSON; default "pools".
	Title string
	// Extra, when not nil, is called on every request for the figures a
	// service adds below the pools (a worker's counters, say). It must be
	// safe for concurrent use and return promptly.
	Extra func() []Section
}

// Section is a group of figures a service adds to the page.
type Section struct {
	Title string `json:"title"`
	// ID names the section in the page's DOM (data-section) and in the
	// JSON; keep it to letters, digits, '-' and '_'.
	ID   string `json:"id"`
	Rows []Row  `json:"rows"`
}

// Row is one figure of a Section: Name is its data-field, Value its raw
// number (data-value). When Text is not empty the page shows it instead of
// Value (Value still goes to data-value and the JSON). Text is redacted
// with poolset.Redact before it is shown or served.
type Row struct {
	Name  string `json:"name"`
	Value int64  `json:"value"`
	Text  string `json:"text,omitempty"`
}

// Page serves the live pools page of a pool set: the HTML at the path it
// is mounted on, and the JSON document at any path that ends in ".json".
// Its methods are safe for concurrent use; it starts no goroutine.
type Page struct {
	set     *poolset.Set
	opts    Options
	release atomic.Pointer[release.Report]
}

// New returns the page of set (nil: a page with no pools, for a service
// that has not opened them yet).
func New(set *poolset.Set, opts Options) *Page {
	if opts.Title == "" {
		opts.Title = "pools"
	}
	return &Page{set: set, opts: opts}
}

// SetRelease publishes the report of the service's release, which the page
// shows from its next refresh on. A nil report withdraws it. It does not
// block.
func (p *Page) SetRelease(r *release.Report) {
	p.release.Store(r)
}

// Document is the JSON the page serves and polls; see docs/POOLS_PAGE.md.
// Durations are in nanoseconds (fields ending in _ns), except in Release,
// whose milliseconds are those of release.Report's JSON.
type Document struct {
	Title    string    `json:"title"`
	Time     time.Time `json:"time"`
	Pools    []Pool    `json:"pools"`
	Sections []Section `json:"sections"`
	Release  *Release  `json:"release"` // null until SetRelease
}

// Pool is one pool's figures: poolset.PoolStats without the histograms,
// with their quantiles instead, and the read pool's rotation state.
type Pool struct {
	Name      string `json:"name"`
	Role      string `json:"role"` // "primary" or "read"
	Kind      string `json:"kind"`
	Address   string `json:"address"` // password shown as ***
	ReadOnly  bool   `json:"read_only"`
	Closed    bool   `json:"closed"`
	Healthy   bool   `json:"healthy"`
	Unhealthy string `json:"unhealthy,omitempty"`
	// Rotation is a read pool's state: "in" (serving reads), "out" (its
	// health check fails: Unhealthy says why) or "closed". Omitted for the
	// primary.
	Rotation string        `json:"rotation,omitempty"`
	Leaves   int64         `json:"leaves"`
	Rejoins  int64         `json:"rejoins"`
	Lag      time.Duration `json:"lag_ns"`
	LagKnown bool          `json:"lag_known"`

	MaxOpen      int           `json:"max_open"`
	Open         int           `json:"open"`
	InUse        int           `json:"in_use"`
	Idle         int           `json:"idle"`
	Waiting      int           `json:"waiting"`
	WaitCount    int64         `json:"wait_count"`
	WaitDuration time.Duration `json:"wait_ns"`
	Acquires     int64         `json:"acquires"`
	Timeouts     int64         `json:"acquire_timeouts"`
	WaitP50      time.Duration `json:"wait_p50_ns"`
	WaitP99      time.Duration `json:"wait_p99_ns"`
	HoldP50      time.Duration `json:"hold_p50_ns"`
	HoldP99      time.Duration `json:"hold_p99_ns"`
	ConnectP50   time.Duration `json:"connect_p50_ns"`
	ConnectP99   time.Duration `json:"connect_p99_ns"`

	Repos []Repo `json:"repos"`
}

// Repo is one repository's use of one pool: poolset.RepoStats without the
// histograms, with their quantiles instead.
type Repo struct {
	Repo        string        `json:"repo"`
	Use         string        `json:"use"` // "reads", "writes" or "reads+writes"
	InUse       int64         `json:"in_use"`
	Waiting     int64         `json:"waiting"`
	Acquires    int64         `json:"acquires"`
	Queries     int64         `json:"queries"`
	Txs         int64         `json:"txs"`
	Wait        time.Duration `json:"wait_ns"`
	WaitP50     time.Duration `json:"wait_p50_ns"`
	WaitP99     time.Duration `json:"wait_p99_ns"`
	Hold        time.Duration `json:"hold_ns"`
	HoldP50     time.Duration `json:"hold_p50_ns"`
	HoldP99     time.Duration `json:"hold_p99_ns"`
	LongestHold time.Duration `json:"longest_hold_ns"`
	Timeouts    int64         `json:"acquire_timeouts"`
	Leaks       int64         `json:"leaks"`
	Fallbacks   int64         `json:"fallbacks"`
	// FallbackFailures, ReadYourWritesReplica and ReadYourWritesPrimary are
	// poolset.RepoStats's.
	FallbackFailures      int64 `json:"fallback_failures"`
	ReadYourWritesReplica int64 `json:"ryw_replica"`
	ReadYourWritesPrimary int64 `json:"ryw_primary"`
}

// Release is the published release report.
type Release struct {
	OK         bool          `json:"ok"`
	DurationMS float64       `json:"duration_ms"`
	Steps      []ReleaseStep `json:"steps"`
	// Text is the report as release.Report.String prints it.
	Text string `json:"text"`
}

// ReleaseStep is one step of a release report, as in its JSON form.
type ReleaseStep struct {
	Name       string  `json:"name"`
	Outcome    string  `json:"outcome"` // "ok", "failed" or "timeout"
	DurationMS float64 `json:"duration_ms"`
	TimeoutMS  float64 `json:"timeout_ms"`
	Error      string  `json:"error,omitempty"`
}

// Snapshot returns the document the page serves now. Every string that
// comes from configuration or an error (addresses, reasons, release
// errors, sections' texts) is passed through poolset.Redact.
func (p *Page) Snapshot() Document {
	d := Document{Title: p.opts.Title, Time: time.Now(), Pools: []Pool{}, Sections: []Section{}}
	if p.set != nil {
		for _, st := range p.set.Stats() {
			d.Pools = append(d.Pools, poolOf(st))
		}
	}
	if p.opts.Extra != nil {
		for _, s := range p.opts.Extra() {
			rows := make([]Row, len(s.Rows))
			for i, r := range s.Rows {
				r.Text = poolset.Redact(r.Text)
				rows[i] = r
			}
			s.Rows = rows
			d.Sections = append(d.Sections, s)
		}
	}
	if r := p.release.Load(); r != nil {
		d.Release = releaseOf(r)
	}
	return d
}

func poolOf(st poolset.PoolStats) Pool {
	p := Pool{
		Name: st.Name, Role: st.Role, Kind: st.Kind, Address: poolset.Redact(st.Address),
		ReadOnly: st.ReadOnly, Closed: st.Closed, Healthy: st.Healthy, Unhealthy: poolset.Redact(st.Unhealthy),
		Leaves: st.Leaves, Rejoins: st.Rejoins, Lag: st.Lag, LagKnown: st.LagKnown,
		MaxOpen: st.MaxOpen, Open: st.Open, InUse: st.InUse, Idle: st.Idle, Waiting: st.Waiting,
		WaitCount: st.WaitCount, WaitDuration: st.WaitDuration, Acquires: st.Acquires, Timeouts: st.Timeouts,
		WaitP50: st.WaitTimes.Quantile(0.5), WaitP99: st.WaitTimes.Quantile(0.99),
		HoldP50: st.HoldTimes.Quantile(0.5), HoldP99: st.HoldTimes.Quantile(0.99),
		ConnectP50: st.CreateTimes.Quantile(0.5), ConnectP99: st.CreateTimes.Quantile(0.99),
		Repos: make([]Repo, 0, len(st.Repos)),
	}
	if st.Role != "primary" {
		switch {
		case st.Closed:
			p.Rotation = "closed"
		case st.Healthy:
			p.Rotation = "in"
		default:
			p.Rotation = "out"
		}
	}
	for _, r := range st.Repos {
		p.Repos = append(p.Repos, Repo{
			Repo: r.Repo, Use: r.Use, InUse: r.InUse, Waiting: r.Waiting, Acquires: r.Acquires,
			Queries: r.Queries, Txs: r.Txs,
			Wait: r.Wait, WaitP50: r.WaitTimes.Quantile(0.5), WaitP99: r.WaitTimes.Quantile(0.99),
			Hold: r.Hold, HoldP50: r.HoldTimes.Quantile(0.5), HoldP99: r.HoldTimes.Quantile(0.99),
			LongestHold: r.LongestHold, Timeouts: r.Timeouts, Leaks: r.Leaks,
			Fallbacks: r.Fallbacks, FallbackFailures: r.FallbackFailures,
			ReadYourWritesReplica: r.ReadYourWritesReplica, ReadYourWritesPrimary: r.ReadYourWritesPrimary,
		})
	}
	return p
}

func releaseOf(r *release.Report) *Release {
	out := &Release{OK: len(r.Failed()) == 0, DurationMS: millis(r.Duration), Steps: []ReleaseStep{},
		Text: poolset.Redact(r.String())}
	for _, st := range r.Steps {
		s := ReleaseStep{Name: st.Name, Outcome: string(st.Outcome), DurationMS: millis(st.Duration), TimeoutMS: millis(st.Timeout)}
		if st.Err != nil {
			s.Error = poolset.Redact(st.Err.Error())
		}
		out.Steps = append(out.Steps, s)
	}
	return out
}

// millis returns d in milliseconds, to the microsecond, as release's JSON.
func millis(d time.Duration) float64 {
	return float64(d.Round(time.Microsecond)) / float64(time.Millisecond)
}

// contentSecurityPolicy keeps the page to its own origin: inline style and
// script, and fetches of its JSON; nothing else may load.
const contentSecurityPolicy = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// ServeHTTP serves the JSON document (Snapshot) when the request's path
// ends in ".json", and the HTML page otherwise; the page polls the JSON at
// its own path plus ".json" (mount /pools and /pools.json, say). Only GET
// and HEAD are answered; responses are not to be cached.
func (p *Page) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		rw.Header().Set("Allow", "GET, HEAD")
		http.Error(rw, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	h := rw.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	if strings.HasSuffix(r.URL.Path, ".json") {
		b, err := json.Marshal(p.Snapshot())
		if err != nil {
			http.Error(rw, err.Error(), http.StatusInternalServerError)
			return
		}
		h.Set("Content-Type", "application/json")
		rw.Write(append(b, '\n'))
		return
	}
	path := strings.TrimSuffix(r.URL.Path, "/")
	if path == "" {
		path = "/index"
	}
	var buf bytes.Buffer
	err := pageTmpl.Execute(&buf, struct{ Title, JSON string }{p.opts.Title, path + ".json"})
	if err != nil {
		http.Error(rw, err.Error(), http.StatusInternalServerError)
		return
	}
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	rw.Write(buf.Bytes())
}
