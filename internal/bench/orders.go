// Package bench measures the pipeline: a load generator that publishes
// realistic orders at a target rate, and the benchmark behind `make bench`
// (the pipeline at its maximum sustained rate, the database ceiling, a naive
// consumer, a latency run at half the maximum, and the consumer runtime
// against the raw ceiling of the SNS/SQS endpoint).
package bench

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/orderpipe/orderpipe/catalog"
	"github.com/orderpipe/orderpipe/events"
	"github.com/orderpipe/orderpipe/internal/seed"
)

// HotSKUs are the promotion items: most orders of a promotion carry one of
// them, so their stock rows are the database's hot spots.
var HotSKUs = []events.SKU{"MUG-CLASSIC", "TEE-BLACK-M", "STICKER-PACK"}

// Order shape of the generated traffic.
const (
	maxItems      = 5    // items per order: 1..maxItems
	hotItemPct    = 35   // percent of items that are a hot SKU
	couponPct     = 20   // percent of orders that carry a coupon
	customerCount = 5000 // distinct customers
)

// Generator makes order.placed events over the seed catalog: 1–5 items, a
// quantity of 1–3 each, a coupon on one order in five (some of which do not
// apply: expired, below the minimum, over their limit), and a few hot SKUs
// in a third of the items. It is safe for concurrent use.
type Generator struct {
	domain string
	cold   []events.SKU
	codes  []string
	mu     sync.Mutex
	rng    *rand.Rand
}

// NewGenerator returns a generator whose customers have addresses at
// domain, seeded with seed (same seed, same orders apart from their ids).
func NewGenerator(seedValue uint64, domain string) *Generator {
	g := &Generator{domain: domain, rng: rand.New(rand.NewPCG(seedValue, 0x0de7))}
	hot := map[events.SKU]bool{}
	for _, s := range HotSKUs {
		hot[s] = true
	}
	for _, p := range seed.Products {
		if !hot[p.SKU] {
			g.cold = append(g.cold, p.SKU)
		}
	}
	for _, c := range seed.Coupons {
		g.codes = append(g.codes, c.Code)
	}
	return g
}

// Order returns one order.placed event that occurred at at.
func (g *Generator) Order(at time.Time) events.Event {
	g.mu.Lock()
	cust := g.rng.IntN(customerCount)
	o := events.Order{
		OrderID:  "ord-" + uuid.NewString(),
		Customer: events.Customer{ID: fmt.Sprintf("cus-%05d", cust), Email: fmt.Sprintf("customer%05d@%s", cust, g.domain), Name: fmt.Sprintf("Customer %05d", cust)},
		Currency: "USD",
		Items:    make([]events.Item, 1+g.rng.IntN(maxItems)),
	}
	for i := range o.Items {
		sku := g.cold[g.rng.IntN(len(g.cold))]
		if g.rng.IntN(100) < hotItemPct {
			sku = HotSKUs[g.rng.IntN(len(HotSKUs))]
		}
		o.Items[i] = events.Item{SKU: sku, Quantity: 1 + g.rng.IntN(3)}
	}
	if g.rng.IntN(100) < couponPct {
		o.CouponCode = g.codes[g.rng.IntN(len(g.codes))]
	}
	g.mu.Unlock()
	return events.Event{
		EventID: events.EventID(uuid.NewString()), EventType: events.OrderPlaced,
		SchemaVersion: events.SchemaVersion, OccurredAt: at.UTC(), Order: o,
	}
}

// Orders returns n orders that occurred at at.
func (g *Generator) Orders(n int, at time.Time) []events.Event {
	evs := make([]events.Event, n)
	for i := range evs {
		evs[i] = g.Order(at)
	}
	return evs
}

// Products is the seed catalog with stock no benchmark can exhaust, so
// every order is reserved (the expensive path) rather than rejected once
// the scarce items are gone.
func Products() []catalog.Product {
	ps := make([]catalog.Product, len(seed.Products))
	for i, p := range seed.Products {
		p.Stock = 100_000_000
		ps[i] = p
	}
	return ps
}
