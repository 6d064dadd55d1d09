package main

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// poolsDoc is the part of /pools.json the tests read.
type poolsDoc struct {
	Pools []struct {
		Name     string `json:"name"`
		Role     string `json:"role"`
		Rotation string `json:"rotation"`
		Closed   bool   `json:"closed"`
		Repos    []struct {
			Repo     string `json:"repo"`
			Use      string `json:"use"`
			Acquires int64  `json:"acquires"`
		} `json:"repos"`
	} `json:"pools"`
	Sections []struct {
		ID   string `json:"id"`
		Rows []struct {
			Name  string `json:"name"`
			Value int64  `json:"value"`
		} `json:"rows"`
	} `json:"sections"`
	Release *struct {
		OK    bool   `json:"ok"`
		Text  string `json:"text"`
		Steps []struct {
			Name string `json:"name"`
		} `json:"steps"`
	} `json:"release"`
}

// primaryRepos returns the repositories of the document's primary.
func (d poolsDoc) primaryRepos() map[string]bool {
	got := map[string]bool{}
	for _, p := range d.Pools {
		if p.Role == "primary" {
			for _, r := range p.Repos {
				got[r.Repo] = true
			}
		}
	}
	return got
}

// getPools fetches and decodes url; ok is false when it did not answer
// with a document.
func getPools(client *http.Client, url string) (d poolsDoc, body string, ok bool) {
	code, body := httpGet(client, url)
	if code != http.StatusOK {
		return d, body, false
	}
	return d, body, json.Unmarshal([]byte(body), &d) == nil
}

var poolsPageLine = regexp.MustCompile(`(?m)^pools page: (http://\S+/pools)$`)

// TestDemoPoolsPage: the demo on the embedded defaults serves its pools
// page on a free port it prints ("pools page: URL"); /pools.json shows the
// pools and, under the primary, the repositories users, orders and
// products while the demo runs; with --keep-serving, once the summary is
// printed it shows the release report and the worker's figures, with no
// password anywhere, and SIGTERM then ends the demo with exit code 0.
func TestDemoPoolsPage(t *testing.T) {
	const password = "pagePW-s3cret"
	// A Redis that does not answer is not an error: the URL only puts a
	// password in the configuration.
	redisURL := "redis://:" + password + "@" + freeAddr(t)
	d := startProc(t, "demo", "--data", t.TempDir(), "--duration", "2s", "--orders", "300",
		"--redis", redisURL, "--keep-serving", "--json") // --admin: the default, 127.0.0.1:0

	var page string
	if !eventually(60*time.Second, func() bool {
		if m := poolsPageLine.FindStringSubmatch(d.stderr.String()); m != nil {
			page = m[1]
		}
		return page != "" || d.exited()
	}) || page == "" {
		t.Fatalf("stderr: no line %q; want the page's URL\n%s", "pools page: http://HOST:PORT/pools", tail(d.stderr.String(), 20))
	}
	client := &http.Client{Timeout: 2 * time.Second}
	defer client.CloseIdleConnections()

	var doc poolsDoc
	var body string
	polls := 0
	running := eventually(60*time.Second, func() bool {
		var ok bool
		polls++
		doc, body, ok = getPools(client, page+".json")
		got := doc.primaryRepos()
		return ok && doc.Release == nil && got["users"] && got["orders"] && got["products"] || strings.Contains(d.stdout.String(), "}")
	})
	if !running || doc.Release != nil {
		t.Fatalf("GET %s.json during the run: got no primary with users, orders and products before the summary (%d polls)\n%s", page, polls, body)
	}
	if len(doc.Pools) != 2 || doc.Pools[1].Role != "read" || doc.Pools[1].Rotation != "in" {
		t.Errorf("pools during the run: got %+v; want the primary and a read pool in the rotation", doc.Pools)
	}
	t.Logf("%d polls of %s.json until the primary showed users, orders and products", polls, page)

	// The summary printed, the page has the release report.
	if !eventually(60*time.Second, func() bool { return strings.Contains(d.stdout.String(), `"release"`) || d.exited() }) || d.exited() {
		r := d.wait()
		t.Fatalf("demo --keep-serving: exited (code %d) or printed no summary\nstdout: %s\nstderr:\n%s", r.code, r.stdout, tail(r.stderr, 20))
	}
	doc, body, ok := getPools(client, page+".json")
	if !ok || doc.Release == nil || !doc.Release.OK || !strings.Contains(doc.Release.Text, "STEP") {
		t.Fatalf("GET %s.json after the summary: got %s; want the release report, ok", page, body)
	}
	var steps []string
	for _, st := range doc.Release.Steps {
		steps = append(steps, st.Name)
	}
	if got := strings.Join(steps, ", "); got != "consumer, redis, pools, broker nats, embedded nats server" {
		t.Errorf("release steps on the page: got [%s]; want [consumer, redis, pools, broker nats, embedded nats server]", got)
	}
	for _, p := range doc.Pools {
		if !p.Closed {
			t.Errorf("pool %s after the release: got open; want closed", p.Name)
		}
	}
	worker := map[string]int64{}
	for _, s := range doc.Sections {
		if s.ID == "worker" {
			for _, r := range s.Rows {
				worker[r.Name] = r.Value
			}
		}
	}
	if worker["received"] != 300 || worker["acked"] != 300 || worker["in_flight"] != 0 {
		t.Errorf("worker section: got %v; want 300 received and acked, none in flight", worker)
	}
	_, html := httpGet(client, page)
	for what, s := range map[string]string{"/pools.json": body, "/pools": html, "stdout": d.stdout.String(), "stderr": d.stderr.String()} {
		if strings.Contains(s, password) {
			t.Errorf("%s shows the Redis password", what)
		}
	}
	if code, _ := httpGet(client, strings.TrimSuffix(page, "/pools")+"/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("GET /readyz after the run: got %d; want 503", code)
	}

	d.signal(syscall.SIGTERM)
	r := d.wait()
	if r.code != exitOK {
		t.Errorf("demo --keep-serving after SIGTERM: got exit code %d; want 0\nstderr:\n%s", r.code, tail(r.stderr, 20))
	}
	sum := decodeOne(t, r.stdout)
	if sum["ok"] != true {
		t.Errorf("summary: ok %v; want true", sum["ok"])
	}
}

// TestWorkerKeepServing: a worker on MariaDB with a read pool (--replica)
// that ends by itself (--exit-when-idle) with --keep-serving prints its
// summary, then keeps its admin server up: /pools.json shows both pools
// closed, the worker's figures and the release report, /readyz answers
// 503, and SIGTERM ends it with exit code 0.
func TestWorkerKeepServing(t *testing.T) {
	const orders = 100
	b := setupBroker(t, "nats")
	d := newShopDB(t, "poolset_t_wk_keep")
	seedShop(t, d)
	loadOrders(t, b, orders)

	addr := freeAddr(t)
	w := startWorker(t, d, b, "--replica", d.dsn, "--admin", addr, "--exit-when-idle", "1s", "--keep-serving")
	if !eventually(60*time.Second, func() bool {
		return strings.Contains(w.stderr.String(), "still serving") || w.exited()
	}) || w.exited() {
		r := w.wait()
		t.Fatalf("worker --keep-serving: exited (code %d) or never said it keeps serving\nstderr:\n%s", r.code, tail(r.stderr, 20))
	}
	client := &http.Client{Timeout: 2 * time.Second}
	defer client.CloseIdleConnections()
	doc, body, ok := getPools(client, "http://"+addr+"/pools.json")
	if !ok || doc.Release == nil || !doc.Release.OK || len(doc.Release.Steps) == 0 || doc.Release.Steps[0].Name != "consumer" {
		t.Fatalf("GET /pools.json after the run: got %s; want the release report, ok, the consumer first", body)
	}
	if len(doc.Pools) != 2 || doc.Pools[1].Role != "read" || doc.Pools[1].Rotation != "closed" || !doc.Pools[0].Closed {
		t.Errorf("pools after the run: got %+v; want the primary and the read pool, closed", doc.Pools)
	}
	acked := int64(-1)
	for _, s := range doc.Sections {
		for _, r := range s.Rows {
			if s.ID == "worker" && r.Name == "acked" {
				acked = r.Value
			}
		}
	}
	if acked != orders {
		t.Errorf("worker section: acked %d; want %d", acked, orders)
	}
	if code, _ := httpGet(client, "http://"+addr+"/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("GET /readyz while kept serving: got %d; want 503", code)
	}
	w.signal(syscall.SIGTERM)
	s := wantCleanExit(t, "worker", w)
	// No "admin server" step: it is released after this report.
	wantReleaseOrder(t, s, "consumer", "pools", "broker nats")
}
