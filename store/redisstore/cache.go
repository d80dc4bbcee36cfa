package redisstore

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/orderpipe/orderpipe/catalog"
	"github.com/orderpipe/orderpipe/events"
	"github.com/orderpipe/orderpipe/store"
)

// ProductCache defaults.
const (
	// ProductCacheTTLDefault bounds how long a product entry lives in Redis.
	ProductCacheTTLDefault = 5 * time.Minute
	// ProductMemoTTLDefault is how long the worker keeps a product in its
	// own memory (workerenv's default for PRODUCT_CACHE_LOCAL_TTL).
	ProductMemoTTLDefault = 5 * time.Second
)

// ProductCache reads catalog data (SKU, name, price) cache-aside: this
// process's memory first (when ProductCacheConfig.MemoTTL is set), then
// Redis, then the database on a miss, and the entry is written back to
// Redis with a TTL. Stock is not in the entry: it changes with every order
// and is only ever decided under its row lock in the database, so
// reservations never touch the cache.
//
// Key {prefix}product:{sku} = "<version>|<json>". Every change to a product
// (UpdateProduct) bumps its version in the database and writes the new entry;
// a write only replaces an entry with an older version, so a slow reader
// that loaded the old row cannot put it back over the new one. If Redis is
// unreachable at the moment of a change, the old entry can outlive it by at
// most the TTL. Other workers' memories hold the old product for at most
// MemoTTL after its Redis entry changed.
type ProductCache struct {
	r      *Client
	source ProductSource
	ttl    time.Duration
	memo   *memo // nil: none
}

// ProductCacheConfig configures a ProductCache.
type ProductCacheConfig struct {
	// TTL of the entries in Redis. Defaults to ProductCacheTTLDefault.
	TTL time.Duration
	// MemoTTL is how long this process remembers a product it read, so
	// that an order's three handlers and the orders after it cost Redis
	// nothing. Zero (the default) keeps nothing in memory: a library user
	// opts in; the worker sets ProductMemoTTLDefault.
	MemoTTL time.Duration
}

// ProductSource is where the products live: the database (store.Catalog).
// Each product comes with its version, which orders the cache's writes.
type ProductSource interface {
	VersionedProducts(ctx context.Context, skus []events.SKU) (map[events.SKU]catalog.Product, map[events.SKU]int64, error)
	UpdateProduct(ctx context.Context, sku events.SKU, ch store.ProductChange) (catalog.Product, int64, error)
}

// NewProductCache returns the cache in front of source.
func NewProductCache(r *Client, source ProductSource, cfg ProductCacheConfig) *ProductCache {
	if cfg.TTL <= 0 {
		cfg.TTL = ProductCacheTTLDefault
	}
	c := &ProductCache{r: r, source: source, ttl: cfg.TTL}
	if cfg.MemoTTL > 0 {
		c.memo = newMemo(cfg.MemoTTL)
	}
	return c
}

type cachedProduct struct {
	Name  string        `json:"name"`
	Price catalog.Cents `json:"price_cents"`
}

// putScript sets KEYS[1] to ARGV[1] .. '|' .. ARGV[2] with TTL ARGV[3] ms,
// unless it holds a newer version.
//
//nolint:dupword // Lua closes nested blocks with "end end"
var putScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur then
  local v = tonumber(string.match(cur, '^(%d+)|'))
  if v and v > tonumber(ARGV[1]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. ARGV[2], 'PX', ARGV[3])
return 1
`)

// Products implements the handlers' catalog readers: name and price (Stock
// is left zero). SKUs not in the catalog are missing from the map. When
// Redis fails, it reads the database.
func (c *ProductCache) Products(ctx context.Context, skus []events.SKU) (map[events.SKU]catalog.Product, error) {
	out := make(map[events.SKU]catalog.Product, len(skus))
	if c.memo == nil {
		return out, c.lookup(ctx, skus, out)
	}
	missing := c.memo.get(skus, out)
	c.r.metrics.CacheRequests.WithLabelValues("memory").Add(float64(len(skus) - len(missing)))
	if len(missing) == 0 {
		return out, nil
	}
	found := make(map[events.SKU]catalog.Product, len(missing))
	if err := c.lookup(ctx, missing, found); err != nil {
		return nil, err
	}
	c.memo.put(found)
	maps.Copy(out, found)
	return out, nil
}

// lookup fills out from Redis, and from the database what Redis lacks (or
// everything, when Redis fails).
func (c *ProductCache) lookup(ctx context.Context, skus []events.SKU, out map[events.SKU]catalog.Product) error {
	keys := make([]string, len(skus))
	for i, sku := range skus {
		keys[i] = c.r.key("product", string(sku))
	}
	var vals []any
	err := c.r.do("cache", func() (err error) {
		if vals, err = c.r.rdb.MGet(ctx, keys...).Result(); err != nil {
			return fmt.Errorf("mget %d products: %w", len(keys), err)
		}
		return nil
	})
	if err != nil {
		c.r.metrics.CacheRequests.WithLabelValues("error").Add(float64(len(skus)))
		products, _, err := c.source.VersionedProducts(ctx, skus)
		for sku, p := range products {
			p.Stock = 0
			out[sku] = p
		}
		return err
	}
	var missing []events.SKU
	for i, v := range vals {
		s, _ := v.(string)
		p, ok := decodeCached(skus[i], s)
		if !ok {
			missing = append(missing, skus[i])
			continue
		}
		out[skus[i]] = p
	}
	c.r.metrics.CacheRequests.WithLabelValues("hit").Add(float64(len(skus) - len(missing)))
	if len(missing) == 0 {
		return nil
	}
	c.r.metrics.CacheRequests.WithLabelValues("miss").Add(float64(len(missing)))
	loaded, versions, err := c.source.VersionedProducts(ctx, missing)
	if err != nil {
		return err
	}
	for sku, p := range loaded {
		p.Stock = 0 // not catalog data: never served from here
		out[sku] = p
		c.put(ctx, p, versions[sku])
	}
	return nil
}

func decodeCached(sku events.SKU, s string) (catalog.Product, bool) {
	_, body, ok := strings.Cut(s, "|")
	if !ok {
		return catalog.Product{}, false
	}
	var cp cachedProduct
	if err := json.Unmarshal([]byte(body), &cp); err != nil {
		return catalog.Product{}, false
	}
	return catalog.Product{SKU: sku, Name: cp.Name, Price: cp.Price}, true
}

// put writes p's entry unless a newer one is there. Best effort: a failure
// only costs a later miss.
func (c *ProductCache) put(ctx context.Context, p catalog.Product, version int64) {
	body, err := json.Marshal(cachedProduct{Name: p.Name, Price: p.Price})
	if err != nil {
		return
	}
	_ = c.r.do("cache", func() error {
		return putScript.Run(ctx, c.r.rdb, []string{c.r.key("product", string(p.SKU))},
			strconv.FormatInt(version, 10), body, c.ttl.Milliseconds()).Err()
	})
}

// UpdateProduct changes a product in the database and then its cache entry,
// and returns the product as it now is.
func (c *ProductCache) UpdateProduct(ctx context.Context, sku events.SKU, ch store.ProductChange) (catalog.Product, error) {
	p, version, err := c.source.UpdateProduct(ctx, sku, ch)
	if err != nil {
		return p, err
	}
	c.put(ctx, p, version)
	if c.memo != nil {
		entry := p
		entry.Stock = 0
		c.memo.put(map[events.SKU]catalog.Product{sku: entry})
	}
	return p, nil
}
