package poolspage_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/poolset/poolset"
	"github.com/poolset/poolset/mysql"
	"github.com/poolset/poolset/poolsettest"
	"github.com/poolset/poolset/poolspage"
	"github.com/poolset/poolset/release"
	"github.com/poolset/poolset/sqlite"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// secret is the password of every DSN the tests feed the page; it must
// never be served.
const secret = "s3cretPW42"

// failingCheck keeps a read pool out of the rotation with an error that
// quotes a DSN with its password.
type failingCheck struct{}

func (failingCheck) Check(context.Context, *sql.Conn) error {
	return errors.New("dial shop:" + secret + "@tcp(10.0.0.9:3306)/shop: connection refused")
}
func (failingCheck) Lag() (time.Duration, bool) { return 0, false }

// openSQLite opens a set on a SQLite file: the primary's address is a URL
// with a password; a second read pool never passes its health check.
func openSQLite(t *testing.T) *poolset.Set {
	t.Helper()
	primary, read, err := sqlite.PoolConfigs(filepath.Join(t.TempDir(), "page.db"), 2)
	if err != nil {
		t.Fatal(err)
	}
	primary.Address = "mysql://shop:" + secret + "@db.example:3306/shop"
	down := read
	down.Health, down.HealthInterval = failingCheck{}, 20*time.Millisecond
	set, err := poolset.Open(t.Context(), poolset.Config{Primary: primary, Reads: []poolset.PoolConfig{read, down}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { set.Close(context.Background()) })
	return set
}

// serve mounts page at /pools and /pools.json on a test server.
func serve(t *testing.T, page *poolspage.Page) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle("/pools", page)
	mux.Handle("/pools.json", page)
	srv := httptest.NewServer(mux)
	t.Cleanup(func() { client.CloseIdleConnections(); srv.Close() })
	return srv.URL
}

// client is the tests' HTTP client; each test closes its idle connections.
var client = &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second}

func get(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// getDoc fetches and decodes the JSON document, checking its content type
// and that it holds no password.
func getDoc(t *testing.T, base string) (poolspage.Document, string) {
	t.Helper()
	resp, body := get(t, base+"/pools.json")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /pools.json: got %d; want 200", resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("GET /pools.json: Content-Type %q; want application/json", ct)
	}
	if strings.Contains(body, secret) {
		t.Errorf("GET /pools.json: the password is served:\n%s", body)
	}
	var d poolspage.Document
	if err := json.Unmarshal([]byte(body), &d); err != nil {
		t.Fatalf("GET /pools.json: %v\n%s", err, body)
	}
	return d, body
}

func findPool(d poolspage.Document, name string) *poolspage.Pool {
	for i := range d.Pools {
		if d.Pools[i].Name == name {
			return &d.Pools[i]
		}
	}
	return nil
}

func findRepo(p *poolspage.Pool, name string) *poolspage.Repo {
	if p == nil {
		return nil
	}
	for i := range p.Repos {
		if p.Repos[i].Repo == name {
			return &p.Repos[i]
		}
	}
	return nil
}

// TestPageSQLite: the JSON has every pool with its repositories and their
// wait and hold quantiles, the read pools' rotation (in, out with the
// reason, closed), the service's sections, and the release report once
// published; the HTML is one self-contained file; no password anywhere.
func TestPageSQLite(t *testing.T) {
	set := openSQLite(t)
	ctx := t.Context()
	users, orders := set.Handle("users"), set.Handle("orders")
	if _, err := orders.ExecContext(ctx, "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)"); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if _, err := users.ExecContext(ctx, "INSERT INTO users (id, name) VALUES (?, 'ada')", i); err != nil {
			t.Fatal(err)
		}
	}
	var n int
	for range 5 {
		if err := users.Read().QueryRowContext(ctx, "SELECT count(*) FROM users").Scan(&n); err != nil {
			t.Fatal(err)
		}
	}
	// The failing read pool is out of the rotation once its check ran.
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if st := set.Stats(); len(st) == 3 && !st[2].Healthy {
			break
		}
	}

	var worker = poolspage.Section{Title: "worker", ID: "worker"}
	page := poolspage.New(set, poolspage.Options{Title: "shop", Extra: func() []poolspage.Section {
		s := worker
		s.Rows = []poolspage.Row{{Name: "received", Value: 7}, {Name: "broker", Text: "nats://shop:" + secret + "@127.0.0.1:4222"}}
		return []poolspage.Section{s}
	}})
	base := serve(t, page)

	d, body := getDoc(t, base)
	if d.Title != "shop" || d.Time.IsZero() {
		t.Errorf("title, time: got %q, %v; want shop, now", d.Title, d.Time)
	}
	if len(d.Pools) != 3 {
		t.Fatalf("pools: got %d; want 3\n%s", len(d.Pools), body)
	}
	prim := findPool(d, "primary")
	if prim == nil || prim.Role != "primary" || prim.Rotation != "" || prim.MaxOpen != 1 {
		t.Errorf("primary: got %+v; want role primary, no rotation, max 1", prim)
	}
	if prim != nil && !strings.Contains(prim.Address, "***") {
		t.Errorf("primary address: got %q; want the password as ***", prim.Address)
	}
	for _, name := range []string{"users", "orders"} {
		r := findRepo(prim, name)
		if r == nil {
			t.Errorf("primary: no repository %q\n%s", name, body)
			continue
		}
		if r.Use != "writes" || r.Acquires == 0 {
			t.Errorf("primary/%s: got use %q, acquires %d; want writes, > 0", name, r.Use, r.Acquires)
		}
		// Every acquire waited at least something, and the quantiles come
		// from the same histograms: ordered.
		if r.WaitP50 <= 0 || r.WaitP99 < r.WaitP50 || r.HoldP50 <= 0 || r.HoldP99 < r.HoldP50 {
			t.Errorf("primary/%s: wait p50 %d p99 %d, hold p50 %d p99 %d; want positive and ordered", name, r.WaitP50, r.WaitP99, r.HoldP50, r.HoldP99)
		}
	}
	for _, key := range []string{`"wait_p50_ns"`, `"wait_p99_ns"`, `"hold_p50_ns"`, `"hold_p99_ns"`, `"longest_hold_ns"`, `"rotation":"in"`, `"rotation":"out"`} {
		if !strings.Contains(body, key) {
			t.Errorf("JSON: no %s\n%s", key, body)
		}
	}
	in := findPool(d, "read-1")
	if in == nil || in.Role != "read" || in.Rotation != "in" || findRepo(in, "users") == nil || findRepo(in, "users").Use != "reads" {
		t.Errorf("read-1: got %+v; want a read pool in the rotation with users' reads", in)
	}
	out := findPool(d, "read-2")
	if out == nil || out.Rotation != "out" || !strings.Contains(out.Unhealthy, "connection refused") || !strings.Contains(out.Unhealthy, "***") {
		t.Errorf("read-2: got %+v; want out of the rotation, the reason redacted", out)
	}
	if len(d.Sections) != 1 || d.Sections[0].ID != "worker" || len(d.Sections[0].Rows) != 2 || d.Sections[0].Rows[0].Value != 7 {
		t.Errorf("sections: got %+v; want worker with its 2 rows", d.Sections)
	}
	if d.Release != nil || !strings.Contains(body, `"release":null`) {
		t.Errorf("release: got %+v; want null before SetRelease", d.Release)
	}

	// The HTML: one file, nothing from elsewhere, the DOM contract's ids.
	resp, html := get(t, base+"/pools")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Errorf("GET /pools: got %d %q; want 200 text/html; charset=utf-8", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "connect-src 'self'") {
		t.Errorf("GET /pools: Content-Security-Policy %q; want default-src 'none' and connect-src 'self'", csp)
	}
	if m := regexp.MustCompile(`(?i)https?:|//[a-z0-9.-]+\.[a-z]{2,}/`).FindString(html); m != "" {
		t.Errorf("GET /pools: an external URL (%q) in the page", m)
	}
	for _, want := range []string{`id="updated"`, `data-seq="0"`, `id="conn"`, `id="release"`, `<title>shop</title>`, `var url = "/pools.json"`, "data-pool", "data-repo", "data-section", "data-rotation", "data-value"} {
		if !strings.Contains(html, want) {
			t.Errorf("GET /pools: no %s in the page", want)
		}
	}
	if strings.Contains(html, secret) || strings.Contains(html, "console.error") {
		t.Errorf("GET /pools: a password or console.error in the page")
	}
	if resp, err := client.Head(base + "/pools.json"); err != nil || resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("HEAD /pools.json: got %v, %v; want 200 application/json", resp, err)
	} else {
		resp.Body.Close()
	}
	if resp, err := client.Post(base+"/pools.json", "text/plain", nil); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /pools.json: got %v, %v; want 405", resp, err)
	} else {
		resp.Body.Close()
	}

	// The release: published, then served with its steps and text.
	var rel release.Stack
	rel.Add("broker", func(context.Context) error {
		return errors.New("close amqp://guest:" + secret + "@127.0.0.1:5672/: broken pipe")
	})
	rel.AddTimeout("pools", set.CloseTimeout(), set.Close)
	report, _ := rel.Release(ctx)
	page.SetRelease(report)
	d, body = getDoc(t, base)
	if d.Release == nil || d.Release.OK || len(d.Release.Steps) != 2 || d.Release.Steps[0].Name != "pools" || d.Release.Steps[1].Outcome != "failed" {
		t.Fatalf("release: got %+v; want pools ok, broker failed\n%s", d.Release, body)
	}
	if !strings.Contains(d.Release.Text, "STEP") || !strings.Contains(d.Release.Text, "broken pipe") || !strings.Contains(d.Release.Steps[1].Error, "***") {
		t.Errorf("release: text %q, error %q; want the table and the redacted error", d.Release.Text, d.Release.Steps[1].Error)
	}
	for _, p := range d.Pools {
		want := "closed"
		if p.Role == "primary" {
			want = ""
		}
		if !p.Closed || p.Rotation != want {
			t.Errorf("%s after Close: got closed %v, rotation %q; want true, %q", p.Name, p.Closed, p.Rotation, want)
		}
	}
	page.SetRelease(nil)
	if d, _ = getDoc(t, base); d.Release != nil {
		t.Errorf("release after SetRelease(nil): got %+v; want null", d.Release)
	}
}

// TestPageNoSet: a page without a set serves an empty document, and the
// page at the root mount polls /index.json.
func TestPageNoSet(t *testing.T) {
	page := poolspage.New(nil, poolspage.Options{})
	srv := httptest.NewServer(page)
	defer srv.Close()
	defer client.CloseIdleConnections()
	_, body := get(t, srv.URL+"/index.json")
	if !strings.Contains(body, `"pools":[]`) || !strings.Contains(body, `"sections":[]`) || !strings.Contains(body, `"title":"pools"`) {
		t.Errorf("GET /index.json: got %s; want no pools, no sections, title pools", body)
	}
	if _, html := get(t, srv.URL+"/"); !strings.Contains(html, `var url = "/index.json"`) {
		t.Errorf("GET /: the page does not poll /index.json")
	}
}

// TestPageMariaDB: on MariaDB, a primary and a read pool through
// mysql.Replica (a standalone server passes its check): the read pool is
// in the rotation with users' reads, the primary has the writes, and the
// addresses carry no password.
func TestPageMariaDB(t *testing.T) {
	dsn := poolsettest.MySQLDatabase(t, "poolset_t_poolspage")
	primary, err := mysql.Primary(dsn)
	if err != nil {
		t.Fatal(err)
	}
	read, err := mysql.Replica(dsn, 0)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	set, err := poolset.Open(ctx, poolset.Config{Primary: primary, Reads: []poolset.PoolConfig{read}})
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close(context.Background())
	users, products := set.Handle("users"), set.Handle("products")
	if _, err := products.ExecContext(ctx, "CREATE TABLE users (id INT PRIMARY KEY, name TEXT)"); err != nil {
		t.Fatal(err)
	}
	if _, err := users.ExecContext(ctx, "INSERT INTO users VALUES (1, 'ada')"); err != nil {
		t.Fatal(err)
	}
	var name string
	if err := users.Read().QueryRowContext(ctx, "SELECT name FROM users WHERE id = 1").Scan(&name); err != nil {
		t.Fatal(err)
	}
	base := serve(t, poolspage.New(set, poolspage.Options{}))
	d, body := getDoc(t, base)
	if len(d.Pools) != 2 {
		t.Fatalf("pools: got %d; want 2\n%s", len(d.Pools), body)
	}
	prim, rd := &d.Pools[0], &d.Pools[1]
	if prim.Role != "primary" || prim.Kind != "mysql" || findRepo(prim, "users") == nil || findRepo(prim, "products") == nil {
		t.Errorf("primary: got %+v; want mysql with users and products", prim)
	}
	if rd.Role != "read" || rd.Rotation != "in" || !rd.ReadOnly {
		t.Errorf("read pool: got role %q rotation %q read-only %v; want read, in, true", rd.Role, rd.Rotation, rd.ReadOnly)
	}
	r := findRepo(rd, "users")
	if r == nil || r.Use != "reads" || r.Acquires != 1 || r.WaitP99 <= 0 || r.HoldP99 <= 0 {
		t.Errorf("read pool/users: got %+v; want one read with its wait and hold", r)
	}
	t.Logf("read pool %s: lag %v (known %v); users wait p99 %v", rd.Address, rd.Lag, rd.LagKnown, r.WaitP99)
}
