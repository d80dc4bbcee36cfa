// Package seed holds the demo catalog and coupons, and generates sample
// orders against them.
package seed

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/google/uuid"

	"github.com/orderpipe/orderpipe/catalog"
	"github.com/orderpipe/orderpipe/events"
)

// Products is the demo catalog. Stock covers a 200-order demo: every order
// is fulfilled. (Running out of stock, and the cancellation that follows,
// is the promotion test's subject: internal/app/spike_test.go.)
var Products = []catalog.Product{
	{SKU: "MUG-CLASSIC", Name: "Classic mug", Price: 1299, Stock: 5000},
	{SKU: "MUG-TRAVEL", Name: "Travel mug", Price: 2450, Stock: 3000},
	{SKU: "TEE-BLACK-M", Name: "Black T-shirt (M)", Price: 1999, Stock: 4000},
	{SKU: "TEE-WHITE-L", Name: "White T-shirt (L)", Price: 1999, Stock: 4000},
	{SKU: "HOODIE-GREY", Name: "Grey hoodie", Price: 4999, Stock: 1500},
	{SKU: "CAP-NAVY", Name: "Navy cap", Price: 1550, Stock: 2500},
	{SKU: "SOCKS-3PK", Name: "Socks, 3 pairs", Price: 899, Stock: 6000},
	{SKU: "TOTE-CANVAS", Name: "Canvas tote", Price: 1425, Stock: 3500},
	{SKU: "NOTEBOOK-A5", Name: "A5 notebook", Price: 675, Stock: 8000},
	{SKU: "PEN-STEEL", Name: "Steel pen", Price: 349, Stock: 10000},
	{SKU: "STICKER-PACK", Name: "Sticker pack", Price: 199, Stock: 20000},
	{SKU: "POSTER-A2", Name: "A2 poster", Price: 1275, Stock: 2000},
	{SKU: "BOTTLE-STEEL", Name: "Steel bottle", Price: 2899, Stock: 1800},
	{SKU: "UMBRELLA", Name: "Umbrella", Price: 3150, Stock: 900},
	{SKU: "KEYRING", Name: "Keyring", Price: 499, Stock: 7000},
	{SKU: "LIMITED-PRINT", Name: "Limited art print", Price: 8900, Stock: 250},
	{SKU: "SIGNED-BOOK", Name: "Signed book", Price: 3499, Stock: 300},
}

// Coupons are the demo coupons: one of each rule.
var Coupons = []catalog.Coupon{
	{Code: "SAVE10", Kind: catalog.CouponPercent, PercentBP: 1000},
	{Code: "TENOFF50", Kind: catalog.CouponFixed, AmountOff: 1000, MinOrder: 5000},
	{Code: "WELCOME5", Kind: catalog.CouponFixed, AmountOff: 500},
	{Code: "PROMO25", Kind: catalog.CouponPercent, PercentBP: 2500, MaxRedemptions: new(20)},
	{Code: "EXPIRED", Kind: catalog.CouponPercent, PercentBP: 5000,
		ValidFrom: new(time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)), ValidUntil: new(time.Date(2021, 1, 1, 0, 0, 0, 0, time.UTC))},
}

// SampleOrders returns n order.placed events with 1–5 items each over the
// demo catalog, a coupon on about one in four, and customers at example.com.
func SampleOrders(n int, rng *rand.Rand) []events.Event {
	evs := make([]events.Event, n)
	now := time.Now().UTC().Truncate(time.Millisecond)
	for i := range evs {
		cust := rng.IntN(1000)
		o := events.Order{
			OrderID:  "ord-" + uuid.NewString()[:13],
			Customer: events.Customer{ID: fmt.Sprintf("cus-%04d", cust), Email: fmt.Sprintf("customer%04d@example.com", cust), Name: fmt.Sprintf("Customer %04d", cust)},
			Currency: "USD",
		}
		for range 1 + rng.IntN(5) {
			p := Products[rng.IntN(len(Products))]
			o.Items = append(o.Items, events.Item{SKU: p.SKU, Quantity: 1 + rng.IntN(3)})
		}
		if rng.IntN(4) == 0 {
			o.CouponCode = Coupons[rng.IntN(len(Coupons))].Code
		}
		evs[i] = events.Event{
			EventID: events.EventID(uuid.NewString()), EventType: events.OrderPlaced,
			SchemaVersion: events.SchemaVersion, OccurredAt: now, Order: o,
		}
	}
	return evs
}
