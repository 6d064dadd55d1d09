package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/poolset/poolset"
	"github.com/poolset/poolset/examples/shop/shop"
	"github.com/poolset/poolset/examples/shop/worker"
	"github.com/poolset/poolset/examples/shop/workermetrics"
	"github.com/poolset/poolset/metrics"
	"github.com/poolset/poolset/poolspage"
	"github.com/poolset/poolset/release"
)

// exitAbandoned is the exit code of a worker whose drain was cut short:
// it released everything, but handed messages back unfinished.
const exitAbandoned = 3

// workerSummary is what the worker prints at exit.
type workerSummary struct {
	Command string         `json:"command"`
	Broker  string         `json:"broker"`
	Backend string         `json:"backend"`
	Worker  worker.Summary `json:"worker"`
	Elapsed time.Duration  `json:"elapsed_ns"`
	// PeakRSS is the process's peak resident memory, in KiB.
	PeakRSS int64               `json:"peak_rss_kib"`
	Pools   []poolset.PoolStats `json:"pools"`
	Release *release.Report     `json:"release"`
	OK      bool                `json:"ok"`
}

// workerFlags binds the worker's flags.
func workerFlags(fs interface {
	IntVar(*int, string, int, string)
	DurationVar(*time.Duration, string, time.Duration, string)
	StringVar(*string, string, string, string)
	BoolVar(*bool, string, bool, string)
}, wc *worker.Config, admin *string, keepServing *bool) {
	fs.IntVar(&wc.Concurrency, "concurrency", worker.DefaultConcurrency, "transactions of one order in flight")
	fs.IntVar(&wc.Group, "group", worker.DefaultGroup, "most orders placed in one transaction when the queue is deep (1: one message per transaction)")
	fs.IntVar(&wc.GroupConcurrency, "group-concurrency", worker.DefaultGroupConcurrency, "most transactions of more than one order in flight")
	fs.IntVar(&wc.MaxDeliver, "max-deliver", worker.DefaultMaxDeliver, "deliveries before a failing message goes to the dead letter")
	fs.DurationVar(&wc.DrainTimeout, "drain-timeout", worker.DefaultDrainTimeout, "how long in-flight messages may finish after the first signal")
	fs.DurationVar(&wc.ExitWhenIdle, "exit-when-idle", 0, "shut down, as on SIGTERM, once nothing arrived for this long (0: never)")
	if admin != nil {
		def := os.Getenv("POOLSET_ADMIN_ADDR")
		if def == "" {
			def = "127.0.0.1:9090"
		}
		fs.StringVar(admin, "admin", def, "`addr`ess of /healthz, /readyz, /metrics and the pools page (/pools, /pools.json); empty: none [POOLSET_ADMIN_ADDR]")
	}
	if keepServing != nil {
		fs.BoolVar(keepServing, "keep-serving", false, "once the run has ended by itself and the release report is on the pools page, keep serving --admin until SIGINT or SIGTERM, then exit 0")
	}
}

func cmdWorker(ctx context.Context, sig *signals, args []string, stdout, stderr io.Writer, log *slog.Logger) error {
	var cfg config
	fs := newFlagSet("worker", stdout, &cfg)
	var wc worker.Config
	var admin string
	var keep bool
	workerFlags(fs, &wc, &admin, &keep)
	if err := parse(fs, args, &cfg); err != nil {
		return err
	}
	if err := ensureDatabase(ctx, cfg); err != nil {
		return err
	}
	// The admin server is released on a stack of its own, after the app's:
	// the pools page shows the app's release report, and /readyz answers
	// 503 until the process ends.
	adminRel := new(release.Stack)
	defer releaseAdmin(ctx, adminRel, log)
	a, err := openApp(ctx, cfg, openOpts{cache: true, broker: true}, log)
	if err != nil {
		return err
	}
	defer a.release(ctx)
	if _, err := shop.Migrate(poolset.WithRepo(ctx, "migrations"), a.set.Primary().DB(), a.dialect); err != nil {
		return err
	}
	wc.Logger = log
	var adm *adminServer
	if admin != "" {
		if adm, err = serveAdmin(a, admin, adminRel, stderr, log); err != nil {
			return err
		}
	}
	sum, err := runWorker(ctx, sig, a, wc, adm, stderr, nil)
	if err != nil {
		return err
	}
	err = finishWorker(ctx, a, adm, sum, cfg.JSON, stdout)
	if keep {
		adm.keepServing(ctx, stderr)
	}
	return err
}

// releaseAdmin releases the admin server's stack (its one step) within
// releaseTimeout, even when ctx is cancelled, logging a failure. It is
// idempotent.
func releaseAdmin(ctx context.Context, rel *release.Stack, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer cancel()
	if _, err := rel.Release(ctx); err != nil {
		log.Warn("admin server", "err", err)
	}
}

// runWorker runs a worker on a's broker and shop until ctx is done (or it
// is idle, or until says so), reporting to the admin server adm when it is
// not nil. The admin server outlives the app's release (it is on a release
// stack of its own, released after the app's), so /readyz answers 503 from
// the first signal until the very end.
func runWorker(ctx context.Context, sig *signals, a *app, wc worker.Config, adm *adminServer, stderr io.Writer, until func(*worker.Worker) bool) (workerSummary, error) {
	sum := workerSummary{Command: "worker", Broker: a.broker.Address(), Backend: a.backend}
	src, err := a.broker.Source(ctx)
	if err != nil {
		return sum, fmt.Errorf("--broker: %w", err)
	}
	a.rel.Add("consumer", src.Stop)
	w := worker.New(a.shop, src, wc)
	if adm != nil {
		adm.attach(w, src)
	}
	sig.onSecond(w.SkipDrain)

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	var last int64
	lastAt := start
	stop := progress(stderr, func() string {
		s := w.Stats()
		now := time.Now()
		rate := float64(s.Acked-last) / now.Sub(lastAt).Seconds()
		last, lastAt = s.Acked, now
		line := fmt.Sprintf("worker: %d processed · %.0f/s · in flight %d", s.Acked+s.DeadLettered, rate, s.InFlight)
		if s.Held > 0 {
			line += fmt.Sprintf(" (%d held: database down)", s.Held)
		}
		for _, p := range a.set.Stats() {
			line += fmt.Sprintf(" · %s %d/%d", p.Name, p.InUse, p.MaxOpen)
		}
		if until != nil && until(w) {
			cancel()
		}
		return line
	})
	sum.Worker = w.Run(runCtx)
	stop()
	sum.Elapsed = time.Since(start)
	return sum, nil
}

// finishWorker takes the pools' figures, releases everything (but the
// admin server adm, nil when there is none), publishes the release report
// on adm's pools page, prints the summary and returns the error that sets
// the exit code.
func finishWorker(ctx context.Context, a *app, adm *adminServer, sum workerSummary, asJSON bool, stdout io.Writer) error {
	sum.Pools = a.set.Stats()
	report, relErr := a.release(ctx)
	adm.publish(report)
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		sum.PeakRSS = ru.Maxrss // KiB on Linux
	}
	sum.Release = report
	sum.OK = relErr == nil && sum.Worker.Abandoned == 0
	if asJSON {
		if err := json.NewEncoder(stdout).Encode(sum); err != nil {
			return err
		}
	} else {
		printWorker(stdout, sum)
	}
	switch {
	case relErr != nil:
		return fmt.Errorf("worker: release: %w", relErr)
	case sum.Worker.Abandoned > 0:
		return &exitError{code: exitAbandoned, msg: fmt.Sprintf("worker: %d messages unfinished at the drain deadline, handed back for redelivery", sum.Worker.Abandoned)}
	}
	return nil
}

func printWorker(w io.Writer, s workerSummary) {
	ws := s.Worker
	fmt.Fprintf(w, "worker (%s, %s): received %d · acked %d (accepted %d, rejected %d, duplicate %d, registered %d) · nak'ed %d · dead-lettered %d · abandoned %d\n",
		s.Backend, s.Broker, ws.Received, ws.Acked, ws.Accepted, ws.Rejected, ws.Duplicates, ws.Registered, ws.Naked, ws.DeadLettered, ws.Abandoned)
	fmt.Fprintf(w, "        ran %s; busy %s at %.0f messages/s; publish to ack p50 %s p99 %s; peak RSS %.1f MiB; drained: %v\n",
		s.Elapsed.Round(time.Millisecond), ws.Busy.Round(time.Millisecond), ws.Rate, ws.AckLatencyP50.Round(time.Millisecond), ws.AckLatencyP99.Round(time.Millisecond), float64(s.PeakRSS)/1024, ws.Drained)
	if ws.Outages > 0 {
		fmt.Fprintf(w, "        the database did not answer %d times, for %s in all; the messages it failed were held, not nak'ed\n",
			ws.Outages, ws.OutageTime.Round(time.Millisecond))
	}
	if ws.Dropped > 0 {
		fmt.Fprintf(w, "        dropped %d messages whose dead-letter copy the broker refused (each logged with its reason)\n", ws.Dropped)
	}
	if ws.BusyRetries > 0 || ws.Interrupted > 0 || ws.SettleErrors > 0 {
		fmt.Fprintf(w, "        busy-pool retries %d · statements interrupted at the drain's end %d · failed settles %d\n",
			ws.BusyRetries, ws.Interrupted, ws.SettleErrors)
	}
	fmt.Fprintln(w, "\npools:")
	poolset.WriteTree(w, s.Pools)
	fmt.Fprintln(w, "\nrelease:")
	fmt.Fprint(w, s.Release.String())
}

// adminServer serves /healthz, /readyz and /metrics for a worker, and the
// live pools page at /pools (its JSON at /pools.json).
type adminServer struct {
	reg    *prometheus.Registry
	page   *poolspage.Page
	url    string                      // of the pools page
	target atomic.Pointer[adminTarget] // nil until attach
}

// adminTarget is what /readyz asks.
type adminTarget struct {
	w    *worker.Worker
	conn worker.Connectivity // nil when the source cannot tell
}

// serveAdmin serves /healthz, /readyz, /metrics and the pools page
// (/pools, /pools.json) at addr until rel is released; the release step,
// "admin server", is registered on rel as soon as the address is listened
// on, and the page's address is printed on stderr ("pools page: URL").
// Until attach, /readyz answers 503 "starting" and /metrics and the page
// have the pools' figures only.
func serveAdmin(a *app, addr string, rel *release.Stack, stderr io.Writer, log *slog.Logger) (*adminServer, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--admin: %w", err)
	}
	s := &adminServer{reg: prometheus.NewRegistry(), url: "http://" + dialable(l.Addr()) + "/pools"}
	s.reg.MustRegister(metrics.NewSetCollector(a.set))
	s.page = poolspage.New(a.set, poolspage.Options{Title: "shop (" + a.backend + ")", Extra: s.sections})
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(rw http.ResponseWriter, _ *http.Request) { fmt.Fprintln(rw, "ok") })
	mux.HandleFunc("/readyz", s.readyz)
	mux.Handle("/metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{}))
	mux.Handle("/pools", s.page)
	mux.Handle("/pools.json", s.page)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() { // ends when the release shuts the server down
		defer close(done)
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn("admin server stopped", "err", err)
		}
	}()
	rel.AddTimeout("admin server", 2*time.Second, func(ctx context.Context) error {
		err := srv.Shutdown(ctx)
		<-done
		return err
	})
	fmt.Fprintf(stderr, "pools page: %s\n", s.url)
	return s, nil
}

// dialable returns addr as a client can dial it: a wildcard host (":9090"
// listens on every interface) becomes the loopback address.
func dialable(addr net.Addr) string {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return addr.String()
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// sections are the pools page's extra figures: the worker's, once
// attached.
func (s *adminServer) sections() []poolspage.Section {
	t := s.target.Load()
	if t == nil {
		return nil
	}
	st := t.w.Stats()
	return []poolspage.Section{{Title: "worker", ID: "worker", Rows: []poolspage.Row{
		{Name: "received", Value: st.Received},
		{Name: "in_flight", Value: st.InFlight},
		{Name: "acked", Value: st.Acked},
		{Name: "accepted", Value: st.Accepted},
		{Name: "rejected", Value: st.Rejected},
		{Name: "duplicates", Value: st.Duplicates},
		{Name: "registered", Value: st.Registered},
		{Name: "naked", Value: st.Naked},
		{Name: "dead_lettered", Value: st.DeadLettered},
		{Name: "held", Value: st.Held},
		{Name: "dropped", Value: st.Dropped},
		{Name: "abandoned", Value: st.Abandoned},
	}}}
}

// publish shows report on the pools page. It does nothing on a nil
// server (no --admin).
func (s *adminServer) publish(report *release.Report) {
	if s != nil {
		s.page.SetRelease(report)
	}
}

// keepServing keeps the process, and so the admin server, up until ctx is
// done (the first SIGINT or SIGTERM), telling so on stderr. It returns at
// once when s is nil (no --admin) or ctx is already done (the run was
// ended by a signal).
func (s *adminServer) keepServing(ctx context.Context, stderr io.Writer) {
	if s == nil || ctx.Err() != nil {
		return
	}
	fmt.Fprintf(stderr, "pools page: still serving %s with the release report; SIGINT or SIGTERM to exit\n", s.url)
	<-ctx.Done()
}

// attach makes the server report on w, which takes messages from src. It
// is called once, before w runs.
func (s *adminServer) attach(w *worker.Worker, src worker.Source) {
	t := &adminTarget{w: w}
	t.conn, _ = src.(worker.Connectivity)
	s.reg.MustRegister(workermetrics.New(w))
	s.target.Store(t)
}

// readyz answers 200 while the worker takes messages, else 503 with the
// reason: starting, shutting down (from the first signal on), the database
// does not answer, or the broker is unreachable (a source that reports its
// connection, as NATS and RabbitMQ do, is disconnected: no message can
// arrive until it reconnects).
func (s *adminServer) readyz(rw http.ResponseWriter, _ *http.Request) {
	why := ""
	switch t := s.target.Load(); {
	case t == nil:
		why = "starting"
	case t.w.DatabaseDown():
		why = "the database does not answer"
	case !t.w.Ready():
		why = "shutting down"
	case t.conn != nil && !t.conn.Connected():
		why = "the broker is unreachable"
	}
	if why != "" {
		http.Error(rw, "not ready: "+why, http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(rw, "ready")
}

func cmdVerify(ctx context.Context, args []string, stdout, stderr io.Writer, log *slog.Logger) error {
	var cfg config
	fs := newFlagSet("verify", stdout, &cfg)
	g, _ := loadFlags(fs)
	expect := fs.Int("expect-orders", 0, "check that orders PREFIX-START.. PREFIX-(START+N-1) are each stored exactly once")
	if err := parse(fs, args, &cfg); err != nil {
		return err
	}
	a, err := openApp(ctx, cfg, openOpts{}, log)
	if err != nil {
		return err
	}
	defer a.release(ctx)
	res, err := verifyShop(ctx, a, *g, *expect)
	if err != nil {
		return err
	}
	if _, err := a.release(ctx); err != nil {
		return fmt.Errorf("verify: release: %w", err)
	}
	if cfg.JSON {
		json.NewEncoder(stdout).Encode(res)
	} else {
		printVerify(stdout, res)
	}
	if !res.OK {
		return fmt.Errorf("verify: failed")
	}
	return nil
}

// verifyResult is what verify prints.
type verifyResult struct {
	Command  string         `json:"command"`
	Check    shop.Check     `json:"check"`
	Expected *shop.Expected `json:"expected,omitempty"`
	OK       bool           `json:"ok"`
}

func verifyShop(ctx context.Context, a *app, g orderGen, expect int) (verifyResult, error) {
	res := verifyResult{Command: "verify"}
	var err error
	if res.Check, err = a.shop.Verify(ctx); err != nil {
		return res, err
	}
	res.OK = res.Check.OK
	if expect > 0 {
		e, err := a.shop.CountOrders(ctx, g.ids(expect))
		if err != nil {
			return res, err
		}
		res.Expected = &e
		res.OK = res.OK && e.Found == e.Want
	}
	return res, nil
}

func printVerify(w io.Writer, r verifyResult) {
	fmt.Fprintf(w, "verify: %d orders (%d accepted, %d rejected); stock conserved on %d products: %v\n",
		r.Check.Orders, r.Check.Accepted, r.Check.Rejected, r.Check.Products, r.Check.OK)
	for _, e := range r.Check.StockErrors {
		fmt.Fprintf(w, "  %s\n", e)
	}
	if e := r.Expected; e != nil {
		fmt.Fprintf(w, "verify: expected orders stored exactly once: %d of %d (%d accepted, %d rejected)\n", e.Found, e.Want, e.Accepted, e.Rejected)
	}
	fmt.Fprintf(w, "verify: ok: %v\n", r.OK)
}
