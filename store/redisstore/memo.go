package redisstore

import (
	"sync"
	"time"

	"github.com/orderpipe/orderpipe/catalog"
	"github.com/orderpipe/orderpipe/events"
)

// memo is the product cache's first tier: the products this process read in
// the last TTL, so that the three handlers of one order, and the orders
// after it, do not each ask Redis for the same SKUs. A price changed
// elsewhere reaches this process's orders within the TTL (the coupon
// cache's rule, billing.CouponCache). SKUs not in the catalog are not
// remembered: they are rare, and the next order must see a SKU added since.
type memo struct {
	ttl time.Duration
	now func() time.Time

	mu      sync.Mutex
	entries map[events.SKU]memoEntry
}

type memoEntry struct {
	product catalog.Product
	expires time.Time
}

// memoMax bounds the entries; a full memo starts over (a catalog larger than
// this is read from Redis, as without the memo).
const memoMax = 10_000

func newMemo(ttl time.Duration) *memo {
	return &memo{ttl: ttl, now: time.Now, entries: map[events.SKU]memoEntry{}}
}

// get fills out with the SKUs it remembers and returns the others.
func (m *memo) get(skus []events.SKU, out map[events.SKU]catalog.Product) (missing []events.SKU) {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, sku := range skus {
		if e, ok := m.entries[sku]; ok && now.Before(e.expires) {
			out[sku] = e.product
			continue
		}
		missing = append(missing, sku)
	}
	return missing
}

// put remembers products for the TTL.
func (m *memo) put(products map[events.SKU]catalog.Product) {
	expires := m.now().Add(m.ttl)
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.entries)+len(products) > memoMax {
		m.entries = map[events.SKU]memoEntry{}
	}
	for sku, p := range products {
		m.entries[sku] = memoEntry{product: p, expires: expires}
	}
}
