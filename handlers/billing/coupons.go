package billing

import (
	"context"
	"sync"
	"time"

	"github.com/orderpipe/orderpipe/catalog"
)

// CouponCache remembers coupons, and codes that name none, for TTL in this
// process, so that an order with a coupon costs no round trip of its own.
// A coupon changed in the database applies to orders within TTL. Its
// redemption limit is never read from here: the store enforces it
// atomically in the order's transaction.
type CouponCache struct {
	next Coupons
	ttl  time.Duration
	now  func() time.Time

	mu      sync.Mutex
	entries map[string]couponEntry
}

type couponEntry struct {
	coupon  catalog.Coupon
	found   bool
	expires time.Time
}

// Coupon cache bounds.
const (
	// CouponCacheTTLDefault is how long a coupon is remembered.
	CouponCacheTTLDefault = 30 * time.Second
	// couponCacheMax bounds the entries; a full cache starts over.
	couponCacheMax = 10_000
)

// NewCouponCache returns a cache in front of next; ttl 0 takes the default.
func NewCouponCache(next Coupons, ttl time.Duration) *CouponCache {
	if ttl <= 0 {
		ttl = CouponCacheTTLDefault
	}
	return &CouponCache{next: next, ttl: ttl, now: time.Now, entries: map[string]couponEntry{}}
}

// Coupon implements Coupons.
func (c *CouponCache) Coupon(ctx context.Context, code string) (catalog.Coupon, bool, error) {
	now := c.now()
	c.mu.Lock()
	e, ok := c.entries[code]
	c.mu.Unlock()
	if ok && now.Before(e.expires) {
		return e.coupon, e.found, nil
	}
	coupon, found, err := c.next.Coupon(ctx, code)
	if err != nil {
		return coupon, false, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= couponCacheMax {
		c.entries = map[string]couponEntry{}
	}
	c.entries[code] = couponEntry{coupon: coupon, found: found, expires: now.Add(c.ttl)}
	return coupon, found, nil
}
