// Package productcache is the shop's product-details cache on Redis
// (go-redis v9): a Client, one long-lived connection pool to Redis, and the
// ProductCache on it, cache-aside with a TTL, never failing the caller when
// Redis is down. It implements shop.ProductCache.
//
// It caches product details only, never the stock, and owns no product
// data: the products live in the shop's database (package shop). It is not
// a general Redis package.
package productcache

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/poolset/poolset"
	"github.com/poolset/poolset/examples/shop/shop"
)

// Options configures Open.
type Options struct {
	// URL is redis://[user:password@]host:port[/db]. Required.
	URL string
	// PoolSize is the most connections the client opens. Default: 10.
	PoolSize int
	// Timeout bounds dialing and each command, so that a Redis that is down
	// costs a read little. Default: 250 ms.
	Timeout time.Duration
}

// Client is a go-redis client opened once and shared. It is safe for
// concurrent use.
type Client struct {
	*goredis.Client
	addr string
	once sync.Once
	err  error
}

func init() {
	// go-redis logs dial failures on its own; poolset reports them once,
	// through the error or the cache's outage warning.
	goredis.SetLogger(quietLogger{})
}

type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

// New parses opts.URL and returns a client that connects on its first
// command, so that a Redis that is down does not stop the caller from
// starting; the client reconnects by itself when Redis comes back. It does
// no I/O. The error names the redacted URL and never shows the password.
func New(opts Options) (*Client, error) {
	ro, err := parseURL(opts.URL)
	if err != nil {
		return nil, err
	}
	if opts.PoolSize <= 0 {
		opts.PoolSize = 10
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 250 * time.Millisecond
	}
	ro.PoolSize = opts.PoolSize
	ro.DialTimeout, ro.ReadTimeout, ro.WriteTimeout = opts.Timeout, opts.Timeout, opts.Timeout
	ro.MaxRetries = -1 // a cache miss is cheaper than a retry
	ro.DisableIdentity = true
	return &Client{Client: goredis.NewClient(ro), addr: poolset.Redact(opts.URL)}, nil
}

// Open is New, then a ping: it fails, and closes the client, when Redis
// does not answer within opts.Timeout. The error names the redacted URL
// and never shows the password.
func Open(ctx context.Context, opts Options) (*Client, error) {
	c, err := New(opts)
	if err != nil {
		return nil, err
	}
	if err := c.Ping(ctx).Err(); err != nil {
		c.Client.Close()
		return nil, fmt.Errorf("redis: connect to %s: %w", c.addr, err)
	}
	return c, nil
}

// CheckURL reports whether raw is a Redis URL Open accepts. The error never
// contains the URL's password.
func CheckURL(raw string) error {
	_, err := parseURL(raw)
	return err
}

func parseURL(raw string) (*goredis.Options, error) {
	u, err := url.Parse(raw)
	if err != nil {
		// url's error quotes the whole URL, password included.
		return nil, fmt.Errorf("redis: invalid URL %s: not a URL", poolset.Redact(raw))
	}
	if u.Scheme != "redis" && u.Scheme != "rediss" {
		return nil, fmt.Errorf("redis: invalid URL %s: want redis://[:password@]host:port[/db]", poolset.Redact(raw))
	}
	ro, err := goredis.ParseURL(raw)
	if err != nil {
		msg := strings.ReplaceAll(err.Error(), raw, poolset.Redact(raw))
		if p, ok := u.User.Password(); ok && p != "" {
			msg = strings.ReplaceAll(msg, p, "***")
		}
		return nil, fmt.Errorf("redis: invalid URL %s: %s", poolset.Redact(raw), msg)
	}
	return ro, nil
}

// Address returns the client's URL with any password shown as ***.
func (c *Client) Address() string { return c.addr }

// Close closes the client's connections. It is idempotent and does not
// block on the server. It is rare to Close a client: it is meant to be
// opened once and shared for the life of the process.
func (c *Client) Close() error {
	c.once.Do(func() { c.err = c.Client.Close() })
	return c.err
}

// ConnectedClients returns the server's connected_clients.
func (c *Client) ConnectedClients(ctx context.Context) (int64, error) {
	info, err := c.Info(ctx, "clients").Result()
	if err != nil {
		return 0, fmt.Errorf("redis: info clients: %w", err)
	}
	return infoField(info, "connected_clients")
}

func infoField(info, key string) (int64, error) {
	for _, line := range strings.Split(info, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok && k == key {
			return strconv.ParseInt(v, 10, 64)
		}
	}
	return 0, fmt.Errorf("redis: %s not in INFO", key)
}

// ProductCache caches shop.ProductDetails under product:<id> as JSON with a
// TTL. When Redis fails it logs one warning per outage, answers misses and
// skips Redis for a second at a time, so reads go to the database and
// nothing fails. It is safe for concurrent use.
type ProductCache struct {
	c   *Client
	ttl time.Duration
	log *slog.Logger

	down     atomic.Bool
	retryAt  atomic.Int64 // unix nanos before which Redis is skipped while down
	hits     atomic.Int64
	misses   atomic.Int64
	failures atomic.Int64
	outages  atomic.Int64
}

// productKeyPrefix starts the key of every cached product.
const productKeyPrefix = "poolset:product:"

// DefaultTTL is how long product details stay cached.
const DefaultTTL = 5 * time.Minute

// NewProductCache returns a cache on c. ttl <= 0 means DefaultTTL; log nil
// means slog.Default().
func NewProductCache(c *Client, ttl time.Duration, log *slog.Logger) *ProductCache {
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	if log == nil {
		log = slog.Default()
	}
	return &ProductCache{c: c, ttl: ttl, log: log}
}

var _ shop.ProductCache = (*ProductCache)(nil)

func (p *ProductCache) key(id int64) string { return productKeyPrefix + strconv.FormatInt(id, 10) }

// usable reports whether Redis should be tried now.
func (p *ProductCache) usable() bool {
	return !p.down.Load() || time.Now().UnixNano() >= p.retryAt.Load()
}

func (p *ProductCache) result(err error) bool {
	if err == nil || err == goredis.Nil {
		if p.down.CompareAndSwap(true, false) {
			p.log.Info("redis: cache is back", "addr", p.c.addr)
		}
		return true
	}
	if p.markDown() {
		p.log.Warn("redis: cache unavailable; reading from the database until it is back", "addr", p.c.addr, "err", err)
	}
	return false
}

// markDown records a failure: Redis is skipped for a second. It reports
// whether an outage starts with it.
func (p *ProductCache) markDown() bool {
	p.failures.Add(1)
	p.retryAt.Store(time.Now().Add(time.Second).UnixNano())
	if p.down.CompareAndSwap(false, true) {
		p.outages.Add(1)
		return true
	}
	return false
}

// Ping asks Redis now, within the client's timeout, and records the answer
// as the cache's commands do: a failure marks the cache down (reads miss
// and go to the database; Redis is tried again after a second, and used
// from its first answer on) and counts an outage. Unlike a command's
// failure it logs nothing: the caller reports the error, which names the
// redacted URL. Call it after NewProductCache to start on a Redis that may
// be down.
func (p *ProductCache) Ping(ctx context.Context) error {
	if err := p.c.Ping(ctx).Err(); err != nil {
		p.markDown()
		return fmt.Errorf("redis: ping %s: %w", p.c.addr, err)
	}
	p.result(nil)
	return nil
}

// GetProduct returns the cached details of product id, if any.
func (p *ProductCache) GetProduct(ctx context.Context, id int64) (shop.ProductDetails, bool) {
	if !p.usable() {
		p.misses.Add(1)
		return shop.ProductDetails{}, false
	}
	b, err := p.c.Get(ctx, p.key(id)).Bytes()
	if !p.result(err) || err != nil {
		p.misses.Add(1)
		return shop.ProductDetails{}, false
	}
	var d shop.ProductDetails
	if json.Unmarshal(b, &d) != nil || d.ID != id {
		p.misses.Add(1)
		return shop.ProductDetails{}, false
	}
	p.hits.Add(1)
	return d, true
}

// SetProduct caches d for the TTL.
func (p *ProductCache) SetProduct(ctx context.Context, d shop.ProductDetails) {
	if !p.usable() {
		return
	}
	b, _ := json.Marshal(d)
	p.result(p.c.Set(ctx, p.key(d.ID), b, p.ttl).Err())
}

// DeleteProduct drops the cached details of product id. While Redis is
// down the delete is lost, and the old details may be served until the TTL
// ends once Redis is back.
func (p *ProductCache) DeleteProduct(ctx context.Context, id int64) {
	if !p.usable() {
		return
	}
	p.result(p.c.Del(ctx, p.key(id)).Err())
}

// CacheStats are a ProductCache's counters.
type CacheStats struct {
	Address  string `json:"address"`
	Hits     int64  `json:"hits"`
	Misses   int64  `json:"misses"`
	Failures int64  `json:"failures"`
	Outages  int64  `json:"outages"`
	Down     bool   `json:"down"`
}

// Stats returns the cache's counters.
func (p *ProductCache) Stats() CacheStats {
	return CacheStats{Address: p.c.addr, Hits: p.hits.Load(), Misses: p.misses.Load(),
		Failures: p.failures.Load(), Outages: p.outages.Load(), Down: p.down.Load()}
}
