package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/poolset/poolset/poolsettest"
)

// The pools page in a real browser: `shop demo --admin ... --keep-serving`
// on a MariaDB primary and its replica, the page it serves opened in a
// headless Chromium driven over the DevTools protocol (chromedp), and the
// page read through the DOM contract it keeps for tests and tools:
// data-pool, data-role and data-rotation on each pool; data-field with the
// raw number in data-value on each figure; data-repo on each repository
// under its pool; #updated with data-seq; #release with data-ok.

// browserTestTimeout bounds the whole browser test: the pair, the demo and
// the browser.
const browserTestTimeout = 150 * time.Second

// pageLoad is how long the demo's mixed load runs: long enough for every
// step that needs the load (the figures moving, the screenshots, the
// replica leaving and joining the rotation) even under -race.
const pageLoad = "25s"

// pageOrders is how many orders the demo publishes after the mix, for its
// worker's figures to show on the page.
const pageOrders = 200

// outOfRotationBound is how soon a replica whose SQL thread stopped must be
// shown out of the rotation (issue 11): the health check runs every 250 ms
// and the page refreshes at least once a second.
const outOfRotationBound = 2 * time.Second

// TestPoolsPageInBrowser runs the demo's mixed load on a primary and a
// replica with the pools page served, and checks in Chromium that the page
// shows the pools and their repositories, that its figures move under the
// load, that a replica whose SQL thread stops leaves the rotation within 2 s
// and comes back, that it fits a phone's width, that the release report
// shows when the run ends, and that it shows no password and logs no error
// to the console. With POOLSET_SCREENSHOT_DIR set, it writes the page under
// load there as pools-wide.png (1280x900) and pools-phone.png (390x844 at
// scale 2), the screenshots of the docs.
func TestPoolsPageInBrowser(t *testing.T) {
	exe := chromiumPath(t)
	pair := poolsettest.MariaDBPair(t, "shop", 1)
	replica := pair.Replicas[0]
	ctx, cancel := context.WithTimeout(t.Context(), browserTestTimeout)
	defer cancel()

	// The demo connects as a user with a password, which the page must
	// never show.
	password := "pw-" + randomHex(t, 12)
	user := pageTestUser(t, ctx, pair, password)
	primaryDSN := fmt.Sprintf("%s:%s@tcp(127.0.0.1:%d)/shop", user, password, pair.Primary.Port)
	replicaDSN := fmt.Sprintf("%s:%s@tcp(127.0.0.1:%d)/shop", user, password, replica.Port)

	demo := startProc(t, "demo", "--mysql", primaryDSN, "--replica", replicaDSN, "--admin", freeAddr(t), "--keep-serving",
		"--duration", pageLoad, "--clients", "8", "--orders", strconv.Itoa(pageOrders))
	pageURL := waitPageURL(t, demo, 60*time.Second)
	t.Logf("pools page: %s", pageURL)

	tab := openBrowser(t, ctx, exe)
	if err := chromedp.Do(tab.ctx, chromedp.EmulateViewport(1280, 900), chromedp.Navigate(pageURL)); err != nil {
		t.Fatalf("open %s: %v", pageURL, err)
	}

	// 1. The primary with users, orders and products under it, and the
	// read pool with users: the repositories show from their first use.
	s := tab.waitFor(t, "the primary with users, orders and products, and a read pool with users", 30*time.Second, func(s pageSnapshot) bool {
		p := s.pool("primary")
		r := s.readPool()
		return p != nil && p.Role == "primary" && p.repo("users") != nil && p.repo("orders") != nil && p.repo("products") != nil &&
			r != nil && r.repo("users") != nil
	})
	read := s.readPool().Name
	t.Logf("pools on the page: %s", s.summary())
	checkContractFields(t, s)
	if r := s.readPool(); r.Rotation != "in" {
		t.Errorf("read pool %s: got data-rotation %q; want in", read, r.Rotation)
	}
	if code, body := httpGet(&http.Client{Timeout: 5 * time.Second}, strings.TrimSuffix(pageURL, "/pools")+"/pools.json"); code != http.StatusOK || !strings.Contains(body, strconv.Quote(read)) {
		t.Errorf("/pools.json: got status %d and no %q in the body; want 200 naming the read pool", code, read)
	}

	// 2. Under the load the figures move: each repository's acquires
	// grow, the in-use counts take more than one value, and the page
	// refreshes at least once a second.
	samples := tab.sample(t, 3*time.Second, 100*time.Millisecond)
	checkFiguresMove(t, samples, read)

	// 3. Screenshots of the page under load, wide and on a phone.
	tab.screenshots(t)

	// 4. The replica's SQL thread stops: the read pool leaves the rotation
	// within 2 s, its users' reads go to the primary meanwhile, and it
	// comes back once the thread runs again.
	before, err := tab.snapshot()
	if err != nil {
		t.Fatalf("read the page: %v", err)
	}
	if err := replica.StopSQLThread(ctx); err != nil {
		t.Fatalf("stop the replica's SQL thread: %v", err)
	}
	stopped := time.Now()
	s, out := tab.waitRotation(t, read, "out", 15*time.Second)
	t.Logf("read pool %s shown out of the rotation %s after STOP SLAVE SQL_THREAD", read, out.Round(time.Millisecond))
	if out > outOfRotationBound {
		t.Errorf("read pool %s: shown out of the rotation after %s; want within %s", read, out.Round(time.Millisecond), outOfRotationBound)
	}
	if why := s.pool(read).Fields["unhealthy"]; why == "" {
		t.Errorf("read pool %s out of the rotation: got no unhealthy reason; want one", read)
	} else {
		t.Logf("read pool %s: unhealthy %q", read, why)
	}
	// Half a second of load with the replica out: the users' reads fall
	// back to the primary.
	time.Sleep(500 * time.Millisecond)
	if err := replica.StartSQLThread(ctx); err != nil {
		t.Fatalf("start the replica's SQL thread: %v", err)
	}
	s, in := tab.waitRotation(t, read, "in", 10*time.Second)
	t.Logf("read pool %s shown in the rotation again %s after START SLAVE SQL_THREAD (%s after the stop)", read, in.Round(time.Millisecond), time.Since(stopped).Round(time.Millisecond))
	if a, b := repoField(before, "primary", "users", "acquires"), repoField(s, "primary", "users", "acquires"); b <= a {
		t.Errorf("primary/users acquires: went from %d to %d while %s was out of the rotation; want the users' reads on the primary", a, b, read)
	}

	// 5. The load ends by itself; the page shows the release report, and
	// no password anywhere.
	s = tab.waitFor(t, "the release report (#release with data-ok)", 60*time.Second, func(s pageSnapshot) bool { return s.Release })
	if s.ReleaseOK != "true" {
		t.Errorf("#release: got data-ok %q; want true", s.ReleaseOK)
	}
	// After the mix, the demo's worker took the orders it published: its
	// figures are on the page.
	received, err := chromedp.Run(tab.ctx, chromedp.Evaluate[string](
		`document.querySelector('[data-section="worker"] [data-field="received"]')?.getAttribute('data-value') ?? ''`))
	if err != nil || received != strconv.Itoa(pageOrders) {
		t.Errorf("worker section: received %q (err %v); want %d", received, err, pageOrders)
	}
	html, err := chromedp.Run(tab.ctx, chromedp.Evaluate[string](`document.documentElement.outerHTML`))
	if err != nil {
		t.Fatalf("read the page: %v", err)
	}
	if strings.Contains(html, password) {
		t.Errorf("the page shows the database password")
	}
	if !strings.Contains(html, user) {
		t.Errorf("the page does not name the database user %q; want the DSNs shown with the password redacted", user)
	}
	if _, body := httpGet(&http.Client{Timeout: 5 * time.Second}, strings.TrimSuffix(pageURL, "/pools")+"/pools.json"); strings.Contains(body, password) {
		t.Errorf("/pools.json shows the database password")
	}

	// 6. Nothing went to the console as an error while the page was served.
	if errs := tab.consoleErrors(); len(errs) > 0 {
		t.Errorf("console errors: got %d; want none:\n%s", len(errs), strings.Join(errs, "\n"))
	}

	// 7. The demo keeps serving until SIGTERM, then exits 0, and the page
	// says it lost the connection. The browser then goes, leaving no
	// process behind.
	if demo.exited() {
		r := demo.wait()
		t.Fatalf("demo exited before SIGTERM with --keep-serving: code %d\nstderr:\n%s", r.code, tail(r.stderr, 40))
	}
	demo.signal(syscall.SIGTERM)
	if r := demo.wait(); r.code != exitOK {
		t.Errorf("demo: got exit code %d after SIGTERM; want 0\nstderr:\n%s", r.code, tail(r.stderr, 40))
	}
	s = tab.waitFor(t, "the lost-connection note (#conn)", 15*time.Second, func(s pageSnapshot) bool { return s.Conn != "" })
	t.Logf("#conn: %q", s.Conn)
	tab.close()
}

// chromiumPath returns /usr/bin/chromium, or chromium on PATH; it skips t
// (fails it with POOLSET_REQUIRE_SERVICES=1) when there is neither.
func chromiumPath(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium"
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	poolsettest.Skip(t, "chromium is not installed (no /usr/bin/chromium, no chromium on PATH)")
	return ""
}

// randomHex returns n random bytes in hex.
func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("random: %v", err)
	}
	return hex.EncodeToString(b)
}

// pageTestUser creates on the pair's primary a user with password and every
// privilege (the demo creates its database and reads the replica's status),
// waits until the replica has it too, and returns its name.
func pageTestUser(t *testing.T, ctx context.Context, pair *poolsettest.Pair, password string) string {
	t.Helper()
	const user = "shop_page"
	db, err := sql.Open("mysql", pair.Primary.DSN(""))
	if err != nil {
		t.Fatalf("open the primary: %v", err)
	}
	defer db.Close()
	for _, q := range []string{
		fmt.Sprintf("CREATE USER '%s'@'127.0.0.1' IDENTIFIED BY '%s'", user, password),
		fmt.Sprintf("GRANT ALL PRIVILEGES ON *.* TO '%s'@'127.0.0.1'", user),
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("create the page's user: %v", err)
		}
	}
	for _, r := range pair.Replicas {
		if err := pair.WaitCaughtUp(ctx, r); err != nil {
			t.Fatalf("replica: %v", err)
		}
	}
	return user
}

// pageLine is the line on which the demo names its pools page.
var pageLine = regexp.MustCompile(`(?m)^pools page: (http://\S+)\s*$`)

// waitPageURL returns the URL the process prints on stderr after
// "pools page: "; it fails t if the process exits first, or after within.
func waitPageURL(t *testing.T, w *workerProc, within time.Duration) string {
	t.Helper()
	var url string
	eventually(within, func() bool {
		if m := pageLine.FindStringSubmatch(w.stderr.String()); m != nil {
			url = m[1]
		}
		return url != "" || w.exited()
	})
	if url == "" {
		w.cmd.Process.Kill()
		r := w.wait()
		t.Fatalf("no \"pools page: URL\" line on stderr: exit code %d\nstderr:\n%s", r.code, tail(r.stderr, 40))
	}
	return url
}

// browserTab is a headless Chromium of the test's own with one tab.
type browserTab struct {
	ctx        context.Context // the tab's: chromedp actions run on it
	dir        string          // the browser's --user-data-dir
	pid        int             // the browser's process
	closeTab   context.CancelFunc
	closeAlloc context.CancelFunc // stops the browser and waits for it
	closeOnce  sync.Once
	t          *testing.T

	mu     sync.Mutex
	errors []string // console errors, uncaught exceptions, log entries of level error
}

// openBrowser starts Chromium (exe) headless with a fresh profile, bounded by
// ctx, and opens a tab that records every console error. The browser is
// stopped, and checked to leave no process behind, by close or when t ends.
func openBrowser(t *testing.T, ctx context.Context, exe string) *browserTab {
	t.Helper()
	b := &browserTab{dir: t.TempDir(), t: t}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(b.dir),
		chromedp.WindowSize(1280, 900),
	)
	allocCtx, closeAlloc := chromedp.NewExecAllocator(ctx, opts...)
	b.ctx, b.closeTab = chromedp.NewContext(allocCtx)
	b.closeAlloc = closeAlloc
	t.Cleanup(b.close)
	// The first action starts the browser, bound to b.ctx.
	if err := chromedp.Do(b.ctx); err != nil {
		t.Fatalf("start %s: %v", exe, err)
	}
	if c := chromedp.FromContext(b.ctx); c != nil && c.Browser != nil && c.Browser.Process() != nil {
		b.pid = c.Browser.Process().Pid
	}
	if err := chromedp.Listen(b.ctx, b.record); err != nil {
		t.Fatalf("listen to the console: %v", err)
	}
	return b
}

// record keeps the console errors among the tab's events. It runs in the
// loop that reads the tab's messages, so it only appends.
func (b *browserTab) record(ev any) {
	var msg string
	switch ev := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		if ev.Type != runtime.ConsoleAPICalledTypeError && ev.Type != runtime.ConsoleAPICalledTypeAssert {
			return
		}
		var parts []string
		for _, a := range ev.Args {
			if a.Description != "" {
				parts = append(parts, a.Description)
			} else {
				parts = append(parts, string(a.Value))
			}
		}
		msg = fmt.Sprintf("console.%s: %s", ev.Type, strings.Join(parts, " "))
	case *runtime.EventExceptionThrown:
		d := ev.ExceptionDetails
		text := d.Text
		if d.Exception != nil && d.Exception.Description != "" {
			text += " " + d.Exception.Description
		}
		msg = fmt.Sprintf("exception: %s (%s:%d:%d)", text, d.URL, d.LineNumber+1, d.ColumnNumber+1)
	case *log.EventEntryAdded:
		if ev.Entry == nil || ev.Entry.Level != log.EntryLevelError {
			return
		}
		msg = fmt.Sprintf("log (%s): %s %s", ev.Entry.Source, ev.Entry.Text, ev.Entry.URL)
	default:
		return
	}
	b.mu.Lock()
	b.errors = append(b.errors, msg)
	b.mu.Unlock()
}

// consoleErrors returns the console errors recorded so far.
func (b *browserTab) consoleErrors() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.errors)
}

// close closes the tab and stops the browser, waiting for it, then fails
// the test if any process of the browser is still there 5 s later, and
// kills those. The browser's processes are its own and its descendants,
// and any with its --user-data-dir. It is idempotent.
func (b *browserTab) close() {
	b.closeOnce.Do(func() {
		procs := browserProcesses(b.dir, b.pid)
		b.closeTab()
		b.closeAlloc()
		var left []int
		eventually(5*time.Second, func() bool {
			left = left[:0]
			for _, pid := range procs {
				if processAlive(pid) {
					left = append(left, pid)
				}
			}
			for _, pid := range browserProcesses(b.dir, 0) {
				if !slices.Contains(left, pid) {
					left = append(left, pid)
				}
			}
			return len(left) == 0
		})
		if len(left) > 0 {
			b.t.Errorf("chromium processes %v (of %v) still run after the allocator was cancelled; killing them", left, procs)
			for _, pid := range left {
				syscall.Kill(pid, syscall.SIGKILL)
			}
			return
		}
		b.t.Logf("chromium: its %d processes (pid %d and its children) are gone", len(procs), b.pid)
	})
}

// browserProcesses returns the live processes that are pid or its
// descendants (pid 0: none) or have --user-data-dir=dir on their command
// line (Linux /proc; Chromium rewrites its children's command lines, so
// the flag is looked for as a substring).
func browserProcesses(dir string, pid int) []int {
	want := []byte("--user-data-dir=" + dir)
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	parent := map[int]int{}
	var pids []int
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil || p == os.Getpid() || !processAlive(p) {
			continue
		}
		if stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat")); err == nil {
			// pid (comm) state ppid ...: the fields after the last ')'.
			if i := bytes.LastIndexByte(stat, ')'); i >= 0 {
				if f := strings.Fields(string(stat[i+1:])); len(f) > 1 {
					parent[p], _ = strconv.Atoi(f[1])
				}
			}
		}
		if cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline")); err == nil && bytes.Contains(cmdline, want) {
			pids = append(pids, p)
		}
	}
	for p := range parent {
		for a, hops := p, 0; pid != 0 && a > 1 && hops < 64; a, hops = parent[a], hops+1 {
			if a == pid {
				if !slices.Contains(pids, p) {
					pids = append(pids, p)
				}
				break
			}
		}
	}
	slices.Sort(pids)
	return pids
}

// processAlive reports whether pid runs: it exists and is not a zombie.
func processAlive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) state ...: the state follows the last ')'.
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// pageSnapshot is what the page shows at one moment, read from its DOM.
type pageSnapshot struct {
	Pools     []pagePool `json:"pools"`
	Seq       int64      `json:"seq"`     // #updated's data-seq, -1 without it
	Release   bool       `json:"release"` // #release is shown, with data-ok
	ReleaseOK string     `json:"releaseOK"`
	Conn      string     `json:"conn"` // #conn's text, when shown
}

// pagePool is one data-pool element.
type pagePool struct {
	Name     string            `json:"name"`
	Role     string            `json:"role"`
	Rotation string            `json:"rotation"`
	Fields   map[string]string `json:"fields"` // data-field: data-value (else the text), the pool's own
	Repos    []pageRepo        `json:"repos"`
}

// pageRepo is one data-repo element under a pool.
type pageRepo struct {
	Name   string            `json:"name"`
	Fields map[string]string `json:"fields"`
}

// snapshotJS reads a pageSnapshot from the DOM. A field belongs to the
// nearest data-repo or data-pool element around it.
const snapshotJS = `(() => {
  const own = '[data-repo],[data-pool]';
  const fields = (el) => {
    const out = {};
    for (const f of el.querySelectorAll('[data-field]')) {
      if (f.closest(own) === el) {
        out[f.dataset.field] = f.getAttribute('data-value') ?? f.textContent.trim();
      }
    }
    return out;
  };
  const pools = [];
  for (const p of document.querySelectorAll('[data-pool]')) {
    const repos = [];
    for (const r of p.querySelectorAll('[data-repo]')) {
      if (r.closest('[data-pool]') === p) {
        repos.push({name: r.dataset.repo, fields: fields(r)});
      }
    }
    pools.push({name: p.dataset.pool, role: p.dataset.role ?? '', rotation: p.dataset.rotation ?? '', fields: fields(p), repos});
  }
  const upd = document.getElementById('updated');
  const rel = document.getElementById('release');
  const conn = document.getElementById('conn');
  return {
    pools,
    seq: upd && upd.dataset.seq !== undefined ? Number(upd.dataset.seq) : -1,
    release: !!rel && !rel.hidden && rel.hasAttribute('data-ok'),
    releaseOK: rel ? (rel.getAttribute('data-ok') ?? '') : '',
    conn: conn && !conn.hidden ? conn.textContent.trim() : '',
  };
})()`

// snapshot reads the page.
func (b *browserTab) snapshot() (pageSnapshot, error) {
	return chromedp.Run(b.ctx, chromedp.Evaluate[pageSnapshot](snapshotJS))
}

// waitFor polls the page until ok holds and returns that snapshot; it fails
// t after within, naming what, with the last snapshot.
func (b *browserTab) waitFor(t *testing.T, what string, within time.Duration, ok func(pageSnapshot) bool) pageSnapshot {
	t.Helper()
	var s pageSnapshot
	var err error
	if eventually(within, func() bool {
		s, err = b.snapshot()
		return err == nil && ok(s)
	}) {
		return s
	}
	t.Fatalf("the page never showed %s within %s: last read %+v (err %v)", what, within, s.summary(), err)
	return s
}

// waitRotation polls the page until pool shows data-rotation want and
// returns that snapshot and how long it took; it fails t after within.
func (b *browserTab) waitRotation(t *testing.T, pool, want string, within time.Duration) (pageSnapshot, time.Duration) {
	t.Helper()
	start := time.Now()
	s := b.waitFor(t, fmt.Sprintf("pool %s with data-rotation %q", pool, want), within, func(s pageSnapshot) bool {
		p := s.pool(pool)
		return p != nil && p.Rotation == want
	})
	return s, time.Since(start)
}

// sample reads the page every `every` for d and returns the snapshots.
func (b *browserTab) sample(t *testing.T, d, every time.Duration) []pageSnapshot {
	t.Helper()
	var out []pageSnapshot
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(every) {
		s, err := b.snapshot()
		if err != nil {
			t.Fatalf("read the page: %v", err)
		}
		out = append(out, s)
	}
	return out
}

// pool returns the pool named name, or nil.
func (s pageSnapshot) pool(name string) *pagePool {
	for i := range s.Pools {
		if s.Pools[i].Name == name {
			return &s.Pools[i]
		}
	}
	return nil
}

// readPool returns the first pool with data-role="read", or nil.
func (s pageSnapshot) readPool() *pagePool {
	for i := range s.Pools {
		if s.Pools[i].Role == "read" {
			return &s.Pools[i]
		}
	}
	return nil
}

// repo returns the repository named name under p, or nil.
func (p *pagePool) repo(name string) *pageRepo {
	for i := range p.Repos {
		if p.Repos[i].Name == name {
			return &p.Repos[i]
		}
	}
	return nil
}

// summary is a one-line account of s for messages.
func (s pageSnapshot) summary() string {
	var b strings.Builder
	for _, p := range s.Pools {
		fmt.Fprintf(&b, "[%s role=%s rotation=%s %v repos:", p.Name, p.Role, p.Rotation, p.Fields)
		for _, r := range p.Repos {
			fmt.Fprintf(&b, " %s%v", r.Name, r.Fields)
		}
		b.WriteString("] ")
	}
	fmt.Fprintf(&b, "seq=%d release=%v ok=%q conn=%q", s.Seq, s.Release, s.ReleaseOK, s.Conn)
	return b.String()
}

// checkFiguresMove fails t unless, over samples taken under load, the
// acquires of the repositories the load drives grow (orders and products
// on the primary, users on read), some in-use figure takes more than one
// value, and data-seq grows by at least one a second.
func checkFiguresMove(t *testing.T, samples []pageSnapshot, read string) {
	t.Helper()
	if len(samples) < 2 {
		t.Fatalf("got %d samples of the page; want at least 2", len(samples))
	}
	first, last := samples[0], samples[len(samples)-1]
	if got := last.Seq - first.Seq; first.Seq < 1 || got < 2 {
		t.Errorf("#updated data-seq: went from %d to %d over 3 s; want at least 1 and 2 more", first.Seq, last.Seq)
	}
	// The mix reads users on the read pool and places orders (orders,
	// products) on the primary; users on the primary only writes, which
	// the mix does not do.
	repos := []struct{ pool, repo string }{{"primary", "orders"}, {"primary", "products"}, {read, "users"}}
	inUse := map[string]map[string]bool{} // figure: values seen
	note := func(key, v string) {
		if inUse[key] == nil {
			inUse[key] = map[string]bool{}
		}
		inUse[key][v] = true
	}
	for _, s := range samples {
		for _, p := range s.Pools {
			note(p.Name+" in_use", p.Fields["in_use"])
			for _, r := range p.Repos {
				note(p.Name+"/"+r.Name+" in_use", r.Fields["in_use"])
				note(p.Name+"/"+r.Name+" wait_p50", r.Fields["wait_p50"])
				note(p.Name+"/"+r.Name+" wait_p99", r.Fields["wait_p99"])
			}
		}
	}
	for _, pr := range repos {
		a, b := repoField(first, pr.pool, pr.repo, "acquires"), repoField(last, pr.pool, pr.repo, "acquires")
		if a < 0 || b <= a {
			t.Errorf("%s/%s acquires: went from %d to %d under load; want it to grow", pr.pool, pr.repo, a, b)
		}
		p99a, p99b := repoField(first, pr.pool, pr.repo, "wait_p99"), repoField(last, pr.pool, pr.repo, "wait_p99")
		if p99a < 0 || p99b < 0 {
			t.Errorf("%s/%s wait_p99: got %d and %d; want raw nanoseconds", pr.pool, pr.repo, p99a, p99b)
		}
		t.Logf("%s/%s: acquires %d -> %d, wait_p99 %s -> %s", pr.pool, pr.repo, a, b, time.Duration(p99a), time.Duration(p99b))
	}
	moved, waitMoved := false, false
	var seen []string
	for key, vals := range inUse {
		if strings.HasSuffix(key, " in_use") {
			moved = moved || len(vals) > 1
		} else {
			waitMoved = waitMoved || len(vals) > 1
		}
		seen = append(seen, fmt.Sprintf("%s: %d values", key, len(vals)))
	}
	slices.Sort(seen)
	t.Logf("figures over %d samples (seq %d -> %d): %s", len(samples), first.Seq, last.Seq, strings.Join(seen, ", "))
	if !moved {
		t.Errorf("no in_use figure took more than one value over %d samples under load", len(samples))
	}
	if !waitMoved {
		t.Errorf("no repository's acquire wait p50 or p99 took more than one value over %d samples under load", len(samples))
	}
}

// checkContractFields fails t unless every pool of s has the figures the
// page's contract names (lag on read pools only when known, so not here),
// and every repository has its own.
func checkContractFields(t *testing.T, s pageSnapshot) {
	t.Helper()
	for _, p := range s.Pools {
		for _, f := range []string{"max_open", "open", "in_use", "idle", "waiting", "timeouts", "address"} {
			if _, ok := p.Fields[f]; !ok {
				t.Errorf("pool %s: no data-field %q", p.Name, f)
			}
		}
		for _, r := range p.Repos {
			for _, f := range []string{"use", "in_use", "waiting", "acquires", "wait_p50", "wait_p99", "longest_hold"} {
				if _, ok := r.Fields[f]; !ok {
					t.Errorf("pool %s, repository %s: no data-field %q", p.Name, r.Name, f)
				}
			}
		}
	}
}

// repoField returns the number in field of repository repo under pool, or -1
// when it is missing or not a number.
func repoField(s pageSnapshot, pool, repo, field string) int64 {
	p := s.pool(pool)
	if p == nil {
		return -1
	}
	r := p.repo(repo)
	if r == nil {
		return -1
	}
	n, err := strconv.ParseInt(r.Fields[field], 10, 64)
	if err != nil {
		return -1
	}
	return n
}

// screenshots takes full-page screenshots at 1280x900 and at 390x844 (scale
// 2, mobile) into t.TempDir(), and into POOLSET_SCREENSHOT_DIR as
// pools-wide.png and pools-phone.png when that is set; it fails t if the
// page scrolls sideways at 390 px. It leaves the viewport at 1280x900.
func (b *browserTab) screenshots(t *testing.T) {
	t.Helper()
	dirs := []string{t.TempDir()}
	if d := os.Getenv("POOLSET_SCREENSHOT_DIR"); d != "" {
		dirs = append(dirs, d)
	}
	shots := []struct {
		name          string
		width, height int64
		opts          []chromedp.EmulateViewportOption
	}{
		{"pools-wide.png", 1280, 900, nil},
		{"pools-phone.png", 390, 844, []chromedp.EmulateViewportOption{chromedp.EmulateScale(2), chromedp.EmulateMobile, chromedp.EmulateTouch}},
	}
	for _, sh := range shots {
		if err := chromedp.Do(b.ctx, chromedp.EmulateViewport(sh.width, sh.height, sh.opts...)); err != nil {
			t.Fatalf("viewport %dx%d: %v", sh.width, sh.height, err)
		}
		// One refresh at the new size before the picture.
		now, err := b.snapshot()
		if err != nil {
			t.Fatalf("read the page: %v", err)
		}
		b.waitFor(t, "a refresh after the resize", 10*time.Second, func(s pageSnapshot) bool { return s.Seq > now.Seq })
		if sh.width == 390 {
			w, err := chromedp.Run(b.ctx, chromedp.Evaluate[[]int](`[document.documentElement.scrollWidth, document.documentElement.clientWidth]`))
			if err != nil {
				t.Fatalf("read the page's width: %v", err)
			}
			if w[1] > 390 || w[0] > w[1] {
				t.Errorf("at 390 px: got scrollWidth %d, clientWidth %d; want no horizontal scroll (scrollWidth <= clientWidth <= 390)", w[0], w[1])
			}
		}
		png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s: %v", sh.name, err)
		}
		for _, d := range dirs {
			if err := os.WriteFile(filepath.Join(d, sh.name), png, 0o644); err != nil {
				t.Fatalf("write %s: %v", sh.name, err)
			}
		}
		t.Logf("screenshot %s: %d bytes in %s", sh.name, len(png), strings.Join(dirs, ", "))
	}
	if err := chromedp.Do(b.ctx, chromedp.EmulateViewport(1280, 900)); err != nil {
		t.Fatalf("viewport 1280x900: %v", err)
	}
}
