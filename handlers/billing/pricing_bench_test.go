package billing_test

import (
	"testing"
	"time"

	"github.com/orderpipe/orderpipe/catalog"
	"github.com/orderpipe/orderpipe/events"
	"github.com/orderpipe/orderpipe/handlers/billing"
)

var (
	benchProducts = map[events.SKU]catalog.Product{
		"MUG-CLASSIC":  {SKU: "MUG-CLASSIC", Name: "Classic mug", Price: 1299},
		"TEE-BLACK-M":  {SKU: "TEE-BLACK-M", Name: "Black T-shirt (M)", Price: 1999},
		"STICKER-PACK": {SKU: "STICKER-PACK", Name: "Sticker pack", Price: 199},
		"HOODIE-GREY":  {SKU: "HOODIE-GREY", Name: "Grey hoodie", Price: 4999},
		"PEN-STEEL":    {SKU: "PEN-STEEL", Name: "Steel pen", Price: 349},
	}
	benchOrder = events.Order{
		OrderID: "ord-1", Currency: "USD",
		Items: []events.Item{
			{SKU: "MUG-CLASSIC", Quantity: 2}, {SKU: "TEE-BLACK-M", Quantity: 1}, {SKU: "STICKER-PACK", Quantity: 3},
			{SKU: "HOODIE-GREY", Quantity: 1}, {SKU: "MUG-CLASSIC", Quantity: 1},
		},
	}
	benchCoupon = catalog.Coupon{Code: "SAVE10", Kind: catalog.CouponPercent, PercentBP: 1000}
)

// BenchmarkPriceLines prices a five-item order (one SKU listed twice) from the catalog.
func BenchmarkPriceLines(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := billing.PriceLines(benchOrder, benchProducts); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDiscount applies a percent coupon (rounded half up) to a subtotal.
func BenchmarkDiscount(b *testing.B) {
	at := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := billing.Discount(12345, benchCoupon, at); err != nil {
			b.Fatal(err)
		}
	}
}
