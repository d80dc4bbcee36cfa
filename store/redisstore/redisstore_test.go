package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/orderpipe/orderpipe/catalog"
	"github.com/orderpipe/orderpipe/events"
	"github.com/orderpipe/orderpipe/handlers"
	"github.com/orderpipe/orderpipe/internal/testenv"
	"github.com/orderpipe/orderpipe/metrics"
	"github.com/orderpipe/orderpipe/store"
	"github.com/orderpipe/orderpipe/store/redisstore"
)

// openRedis returns a redisstore.Client on the shared Redis under a fresh prefix.
func openRedis(t *testing.T, url string) (*redisstore.Client, string) {
	t.Helper()
	r, prefix, _ := openRedisWithMetrics(t, url)
	return r, prefix
}

// openRedisWithMetrics is openRedis with the metrics it counts into.
func openRedisWithMetrics(t *testing.T, url string) (*redisstore.Client, string, *metrics.Metrics) {
	t.Helper()
	prefix := "orderpipe-test:" + uuid.NewString()[:8] + ":"
	m := metrics.New()
	r, err := redisstore.Open(context.Background(), redisstore.Config{URL: url, KeyPrefix: prefix, Logger: testenv.Logger(), Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = r.Purge(context.Background()); r.Close() })
	return r, prefix, m
}

func TestIdempotencyKeysLifecycle(t *testing.T) {
	testenv.Open(t, "redisstore")
	r, _ := openRedis(t, testenv.RedisURL)
	keys := redisstore.NewKeys(r, 300*time.Millisecond, time.Minute)
	ctx := context.Background()
	id := events.EventID(uuid.NewString())
	fpA, fpB := "aa"+fmt.Sprintf("%062d", 0), "bb"+fmt.Sprintf("%062d", 0)

	step := func(fp string, want handlers.Outcome) handlers.Lease {
		t.Helper()
		l, err := keys.Begin(ctx, "billing", id, fp)
		if err != nil {
			t.Fatalf("begin: %v", err)
		}
		if l.Outcome != want {
			t.Fatalf("begin(%s...) = %s, want %s", fp[:2], l.Outcome, want)
		}
		return l
	}
	first := step(fpA, handlers.Acquired)
	if busy := step(fpA, handlers.Busy); busy.Remaining <= 0 || busy.Remaining > 300*time.Millisecond {
		t.Errorf("busy remaining = %s, want within the 300ms lease", busy.Remaining)
	}
	step(fpB, handlers.Conflict)
	if err := keys.Renew(ctx, first); err != nil {
		t.Errorf("renew by the holder: %v", err)
	}
	// A stranger's token neither renews nor releases the lease.
	stranger := first
	stranger.Token = "someone-else"
	if err := keys.Renew(ctx, stranger); !errors.Is(err, handlers.ErrLeaseLost) {
		t.Errorf("renew by a stranger = %v, want ErrLeaseLost", err)
	}
	if err := keys.Release(ctx, stranger); err != nil {
		t.Fatal(err)
	}
	step(fpA, handlers.Busy)
	// The holder releases: the next copy acquires at once.
	if err := keys.Release(ctx, first); err != nil {
		t.Fatal(err)
	}
	second := step(fpA, handlers.Acquired)
	// A lease nobody renews runs out: a crashed worker's copy is retried.
	time.Sleep(400 * time.Millisecond)
	if err := keys.Renew(ctx, second); !errors.Is(err, handlers.ErrLeaseLost) {
		t.Errorf("renew after expiry = %v, want ErrLeaseLost", err)
	}
	third := step(fpA, handlers.Acquired)
	if err := keys.Complete(ctx, third); err != nil {
		t.Fatal(err)
	}
	// The completion is written behind, within 10 ms: until then the key
	// is in progress (busy); then it is done.
	deadline := time.Now().Add(time.Second)
	for {
		l, err := keys.Begin(ctx, "billing", id, fpA)
		if err != nil {
			t.Fatal(err)
		}
		if l.Outcome == handlers.Done {
			break
		}
		if l.Outcome != handlers.Busy || time.Now().After(deadline) {
			t.Fatalf("after Complete: %s, want busy then done within 1s", l.Outcome)
		}
		time.Sleep(5 * time.Millisecond)
	}
	step(fpB, handlers.Conflict)
}

func TestRedisDownFailsFastThroughTheBreaker(t *testing.T) {
	testenv.Open(t, "redisstore")
	r, _, m := openRedisWithMetrics(t, fmt.Sprintf("redis://127.0.0.1:%d/0", testenv.FreePort(t)))
	keys := redisstore.NewKeys(r, 0, 0)
	var last error
	for range 5 {
		_, last = keys.Begin(context.Background(), "billing", events.EventID(uuid.NewString()), "00")
		if last == nil {
			t.Fatal("begin against a closed port succeeded")
		}
	}
	if !errors.Is(last, redisstore.ErrUnavailable) {
		t.Errorf("after 5 failures err = %v, want the open breaker's ErrUnavailable", last)
	}
	if v := testutil.ToFloat64(m.BreakerState.WithLabelValues("redis")); v != 2 {
		t.Errorf(`orderpipe_breaker_state{breaker="redis"} = %v, want 2 (open)`, v)
	}
}

func TestProductCacheAside(t *testing.T) {
	env := testenv.Open(t, "redisstore")
	ctx := context.Background()
	r, prefix, m := openRedisWithMetrics(t, testenv.RedisURL)
	cache := redisstore.NewProductCache(r, store.NewCatalog(env.DB), redisstore.ProductCacheConfig{TTL: time.Minute})
	sku := events.SKU("CACHE-" + uuid.NewString()[:8])
	if _, err := env.DB.Pool().Exec(ctx, `INSERT INTO products (sku, name, price_cents, stock) VALUES ($1, 'Lamp', 4999, 10)`, string(sku)); err != nil {
		t.Fatal(err)
	}
	count := func(result string) float64 { return testutil.ToFloat64(m.CacheRequests.WithLabelValues(result)) }
	get := func() catalog.Product {
		t.Helper()
		ps, err := cache.Products(ctx, []events.SKU{sku, "NO-SUCH-SKU"})
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := ps["NO-SUCH-SKU"]; ok {
			t.Error("an unknown SKU came back")
		}
		return ps[sku]
	}

	miss, hit := count("miss"), count("hit")
	if p := get(); p.Price != 4999 || p.Name != "Lamp" {
		t.Errorf("first read = %+v, want Lamp at 4999", p)
	}
	if count("miss")-miss != 2 { // the lamp and the unknown SKU
		t.Errorf("misses = %v, want 2", count("miss")-miss)
	}
	// The second read is served from Redis: change the row behind the
	// cache's back and the cached price still shows.
	if _, err := env.DB.Pool().Exec(ctx, `UPDATE products SET price_cents = 1 WHERE sku = $1`, string(sku)); err != nil {
		t.Fatal(err)
	}
	if p := get(); p.Price != 4999 {
		t.Errorf("second read price = %d, want the cached 4999", p.Price)
	}
	if count("hit")-hit != 1 {
		t.Errorf("hits = %v, want 1", count("hit")-hit)
	}
	// A change through UpdateProduct updates the entry at once.
	price := catalog.Cents(3999)
	if _, err := cache.UpdateProduct(ctx, sku, store.ProductChange{Price: &price}); err != nil {
		t.Fatal(err)
	}
	if p := get(); p.Price != 3999 {
		t.Errorf("after UpdateProduct price = %d, want 3999", p.Price)
	}
	// The entry expires with its TTL.
	raw := redis.NewClient(mustParse(t, testenv.RedisURL))
	defer raw.Close()
	if ttl := raw.PTTL(ctx, prefix+"product:"+string(sku)).Val(); ttl <= 0 || ttl > time.Minute {
		t.Errorf("entry TTL = %s, want within 1m", ttl)
	}
	// With Redis unreachable, reads fall back to the database.
	down, _ := openRedis(t, fmt.Sprintf("redis://127.0.0.1:%d/0", testenv.FreePort(t)))
	ps, err := redisstore.NewProductCache(down, store.NewCatalog(env.DB), redisstore.ProductCacheConfig{}).Products(ctx, []events.SKU{sku})
	if err != nil || ps[sku].Price != 3999 {
		t.Errorf("read with Redis down = %+v, %v; want 3999 from the database", ps[sku], err)
	}
}

// TestProductMemo shows the memory tier: a product read once is served
// from memory (Redis emptied behind the cache's back changes nothing) until
// the memo's TTL runs out; this process's UpdateProduct updates it at once;
// unknown SKUs are never remembered.
func TestProductMemo(t *testing.T) {
	env := testenv.Open(t, "redisstore")
	ctx := context.Background()
	r, prefix, m := openRedisWithMetrics(t, testenv.RedisURL)
	const memoTTL = 300 * time.Millisecond
	cache := redisstore.NewProductCache(r, store.NewCatalog(env.DB), redisstore.ProductCacheConfig{TTL: time.Minute, MemoTTL: memoTTL})
	sku := events.SKU("MEMO-" + uuid.NewString()[:8])
	if _, err := env.DB.Pool().Exec(ctx, `INSERT INTO products (sku, name, price_cents, stock) VALUES ($1, 'Lamp', 4999, 10)`, string(sku)); err != nil {
		t.Fatal(err)
	}
	count := func(result string) float64 { return testutil.ToFloat64(m.CacheRequests.WithLabelValues(result)) }
	price := func() catalog.Cents {
		t.Helper()
		ps, err := cache.Products(ctx, []events.SKU{sku, "NO-SUCH-SKU"})
		if err != nil {
			t.Fatal(err)
		}
		if p, ok := ps["NO-SUCH-SKU"]; ok {
			t.Errorf("an unknown SKU came back: %+v", p)
		}
		if ps[sku].Stock != 0 {
			t.Errorf("stock %d served from a cache, want 0", ps[sku].Stock)
		}
		return ps[sku].Price
	}
	raw := redis.NewClient(mustParse(t, testenv.RedisURL))
	defer raw.Close()
	setRow := func(cents int) {
		t.Helper()
		if _, err := env.DB.Pool().Exec(ctx, `UPDATE products SET price_cents = $2 WHERE sku = $1`, string(sku), cents); err != nil {
			t.Fatal(err)
		}
		if err := raw.Del(ctx, prefix+"product:"+string(sku)).Err(); err != nil {
			t.Fatal(err)
		}
	}

	start := time.Now()
	if p := price(); p != 4999 {
		t.Fatalf("first read = %d, want 4999", p)
	}
	setRow(1) // the row changed and the Redis entry is gone: only memory has 4999
	memory, unknownMisses := count("memory"), count("miss")
	if p := price(); p != 4999 && time.Since(start) < memoTTL {
		t.Errorf("second read = %d, want 4999 from memory", p)
	}
	if count("memory")-memory != 1 {
		t.Errorf("memory hits = %v, want 1 (the lamp)", count("memory")-memory)
	}
	if count("miss")-unknownMisses != 1 {
		t.Errorf("misses = %v, want 1: the unknown SKU is asked for every time", count("miss")-unknownMisses)
	}
	// This process's change is seen at once.
	newPrice := catalog.Cents(3999)
	changed := time.Now() // before the memory's entry, so it expires after changed + memoTTL
	if _, err := cache.UpdateProduct(ctx, sku, store.ProductChange{Price: &newPrice}); err != nil {
		t.Fatal(err)
	}
	if p := price(); p != 3999 {
		t.Errorf("after UpdateProduct price = %d, want 3999", p)
	}
	// Another process's change (the row and Redis, not this memory) is
	// seen once the memo's TTL has run out.
	setRow(2999)
	deadline := changed.Add(memoTTL + 2*time.Second)
	for price() != 2999 {
		if time.Now().After(deadline) {
			t.Fatalf("the changed price was not read within the memo TTL (%s) and 2s", memoTTL)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if waited := time.Since(changed); waited < memoTTL {
		t.Errorf("the memory forgot the product after %s, before its TTL %s", waited, memoTTL)
	}
}

func mustParse(t *testing.T, url string) *redis.Options {
	t.Helper()
	o, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	return o
}
