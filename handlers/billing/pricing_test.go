package billing

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/orderpipe/orderpipe/catalog"
	"github.com/orderpipe/orderpipe/events"
)

var testProducts = map[events.SKU]catalog.Product{
	"MUG":   {SKU: "MUG", Name: "Mug", Price: 1299},
	"TEE":   {SKU: "TEE", Name: "T-shirt", Price: 2500},
	"PENNY": {SKU: "PENNY", Name: "Sticker", Price: 1},
	"FREE":  {SKU: "FREE", Name: "Catalogue", Price: 0},
}

func items(kv ...any) []events.Item {
	var its []events.Item
	for i := 0; i+1 < len(kv); i += 2 {
		sku, _ := kv[i].(string) // a malformed pair makes an item the test then fails on
		qty, _ := kv[i+1].(int)
		its = append(its, events.Item{SKU: events.SKU(sku), Quantity: qty})
	}
	return its
}

func TestPriceLines(t *testing.T) {
	tests := []struct {
		name      string
		items     []events.Item
		wantLines []Line
		wantSub   catalog.Cents
		wantErr   error
	}{
		{
			name:      "single line",
			items:     items("MUG", 2),
			wantLines: []Line{{SKU: "MUG", Name: "Mug", UnitPrice: 1299, Quantity: 2, Total: 2598}},
			wantSub:   2598,
		},
		{
			name:  "lines sorted by SKU, repeated SKU merged",
			items: items("TEE", 1, "MUG", 1, "TEE", 2),
			wantLines: []Line{
				{SKU: "MUG", Name: "Mug", UnitPrice: 1299, Quantity: 1, Total: 1299},
				{SKU: "TEE", Name: "T-shirt", UnitPrice: 2500, Quantity: 3, Total: 7500},
			},
			wantSub: 8799,
		},
		{
			name:      "free item",
			items:     items("FREE", 5),
			wantLines: []Line{{SKU: "FREE", Name: "Catalogue", UnitPrice: 0, Quantity: 5, Total: 0}},
			wantSub:   0,
		},
		{
			name:    "unknown SKU",
			items:   items("MUG", 1, "NOPE", 1),
			wantErr: events.UnknownSKU("NOPE"),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lines, sub, err := PriceLines(events.Order{Items: tt.items}, testProducts)
			if tt.wantErr != nil {
				if reason, ok := events.ReasonOf(err); !ok || reason != events.ReasonUnknownSKU || err.Error() != tt.wantErr.Error() {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.wantLines, lines); diff != "" {
				t.Errorf("lines (-want +got):\n%s", diff)
			}
			if sub != tt.wantSub {
				t.Errorf("subtotal = %d, want %d", sub, tt.wantSub)
			}
		})
	}
}

func TestDiscount(t *testing.T) {
	day := func(d int) *time.Time { x := time.Date(2026, 11, d, 0, 0, 0, 0, time.UTC); return &x }
	at := *day(15)
	tests := []struct {
		name     string
		subtotal catalog.Cents
		coupon   catalog.Coupon
		want     catalog.Cents
		wantErr  error
	}{
		{"10% of 25.99 rounds 259.9 up", 2599, catalog.Coupon{Kind: catalog.CouponPercent, PercentBP: 1000}, 260, nil},
		{"10% of 25.94 rounds 259.4 down", 2594, catalog.Coupon{Kind: catalog.CouponPercent, PercentBP: 1000}, 259, nil},
		{"exact half cent goes to the customer", 5, catalog.Coupon{Kind: catalog.CouponPercent, PercentBP: 1000}, 1, nil},
		{"12.5% in basis points", 1000, catalog.Coupon{Kind: catalog.CouponPercent, PercentBP: 1250}, 125, nil},
		{"100% is the whole subtotal", 4321, catalog.Coupon{Kind: catalog.CouponPercent, PercentBP: 10000}, 4321, nil},
		{"fixed amount", 5000, catalog.Coupon{Kind: catalog.CouponFixed, AmountOff: 1000}, 1000, nil},
		{"fixed amount capped at subtotal", 700, catalog.Coupon{Kind: catalog.CouponFixed, AmountOff: 1000}, 700, nil},
		{"minimum reached exactly", 5000, catalog.Coupon{Kind: catalog.CouponFixed, AmountOff: 500, MinOrder: 5000}, 500, nil},
		{"below minimum", 4999, catalog.Coupon{Kind: catalog.CouponFixed, AmountOff: 500, MinOrder: 5000}, 0, ErrCouponMinOrder},
		{"not yet valid", 5000, catalog.Coupon{Kind: catalog.CouponFixed, AmountOff: 500, ValidFrom: day(16)}, 0, ErrCouponNotYetValid},
		{"valid from is inclusive", 5000, catalog.Coupon{Kind: catalog.CouponFixed, AmountOff: 500, ValidFrom: day(15)}, 500, nil},
		{"valid until is exclusive", 5000, catalog.Coupon{Kind: catalog.CouponFixed, AmountOff: 500, ValidUntil: day(15)}, 0, ErrCouponExpired},
		{"inside the window", 5000, catalog.Coupon{Kind: catalog.CouponFixed, AmountOff: 500, ValidFrom: day(1), ValidUntil: day(30)}, 500, nil},
		{"large order stays exact", 99_999_999_00, catalog.Coupon{Kind: catalog.CouponPercent, PercentBP: 3333}, 3_332_999_967, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Discount(tt.subtotal, tt.coupon, at)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("Discount(%d) = %d, want %d", tt.subtotal, got, tt.want)
			}
		})
	}
}
