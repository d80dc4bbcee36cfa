package billing

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/orderpipe/orderpipe/catalog"
	"github.com/orderpipe/orderpipe/events"
)

// fakeStore keeps what billing asked of the store.
type fakeStore struct {
	invoiced []Invoice
	coupons  map[string]catalog.Coupon
	reads    int
}

func (s *fakeStore) Invoice(_ context.Context, _ events.Event, inv Invoice) (Issued, error) {
	s.invoiced = append(s.invoiced, inv)
	return Issued{New: true, Number: int64(len(s.invoiced)), Discount: inv.Discount}, nil
}

func (s *fakeStore) Cancel(context.Context, events.Event, string) (bool, error) { return false, nil }

func (s *fakeStore) Coupon(_ context.Context, code string) (catalog.Coupon, bool, error) {
	s.reads++
	c, ok := s.coupons[code]
	return c, ok, nil
}

type fakeCatalog map[events.SKU]catalog.Product

func (c fakeCatalog) Products(context.Context, []events.SKU) (map[events.SKU]catalog.Product, error) {
	return c, nil
}

// TestPlaceQuotesTheOrderForTheStore: the handler prices every line from the
// catalog and works out the coupon's discount or the note that says why it
// does not apply; the store gets the quote (and enforces the redemption
// limit itself).
func TestPlaceQuotesTheOrderForTheStore(t *testing.T) {
	at := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	expired := at.Add(-time.Hour)
	st := &fakeStore{coupons: map[string]catalog.Coupon{
		"SAVE10": {Code: "SAVE10", Kind: catalog.CouponPercent, PercentBP: 1000},
		"OLD":    {Code: "OLD", Kind: catalog.CouponFixed, AmountOff: 500, ValidUntil: &expired},
		"BIG":    {Code: "BIG", Kind: catalog.CouponFixed, AmountOff: 500, MinOrder: 100_00},
	}}
	h := New(st, fakeCatalog{"MUG": {SKU: "MUG", Name: "Mug", Price: 1299}}, st)
	tests := []struct {
		coupon   string
		discount catalog.Cents
		code     string
		note     string
	}{
		{"", 0, "", ""},
		{"SAVE10", 260, "SAVE10", ""}, // 10 % of 25.98 = 2.598 → 2.60
		{"OLD", 0, "", "coupon expired"},
		{"BIG", 0, "", "order below the coupon's minimum ($25.98 < $100.00)"},
		{"NOPE", 0, "", "coupon unknown"},
	}
	for _, tt := range tests {
		ev := events.Event{EventID: "6f1c2c1e-0d7e-4c1a-9d1e-2b7a4f3c9a10", EventType: events.OrderPlaced, OccurredAt: at,
			Order: events.Order{OrderID: "o-" + tt.coupon, Currency: "USD", CouponCode: tt.coupon,
				Customer: events.Customer{ID: "c"}, Items: []events.Item{{SKU: "MUG", Quantity: 2}}}}
		if err := h.Handle(context.Background(), ev); err != nil {
			t.Fatalf("coupon %q: %v", tt.coupon, err)
		}
		got := st.invoiced[len(st.invoiced)-1].Quote
		want := Quote{Lines: []Line{{SKU: "MUG", Name: "Mug", UnitPrice: 1299, Quantity: 2, Total: 2598}}, Subtotal: 2598,
			Discount: tt.discount, Total: 2598 - tt.discount, CouponCode: tt.code, CouponNote: tt.note}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("coupon %q: quote (-want +got):\n%s", tt.coupon, diff)
		}
	}
}

// TestCouponCacheSparesTheRoundTrip: a coupon, and a code that names none,
// are read once per TTL; after it, read again.
func TestCouponCacheSparesTheRoundTrip(t *testing.T) {
	st := &fakeStore{coupons: map[string]catalog.Coupon{"SAVE10": {Code: "SAVE10"}}}
	c := NewCouponCache(st, time.Minute)
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	c.now = func() time.Time { return now }
	for range 3 {
		if _, ok, err := c.Coupon(context.Background(), "SAVE10"); !ok || err != nil {
			t.Fatalf("SAVE10: %v, %v", ok, err)
		}
		if _, ok, err := c.Coupon(context.Background(), "NOPE"); ok || err != nil {
			t.Fatalf("NOPE: %v, %v", ok, err)
		}
	}
	if st.reads != 2 {
		t.Errorf("store read %d times for 6 lookups of 2 codes, want 2", st.reads)
	}
	now = now.Add(time.Minute)
	if _, _, err := c.Coupon(context.Background(), "SAVE10"); err != nil {
		t.Fatal(err)
	}
	if st.reads != 3 {
		t.Errorf("after the TTL the store was read %d times in all, want 3", st.reads)
	}
}

// TestCouponCacheKeepsNoFailure: a failed read is not remembered.
func TestCouponCacheKeepsNoFailure(t *testing.T) {
	down := errors.New("database down")
	c := NewCouponCache(failingCoupons{down}, time.Minute)
	if _, _, err := c.Coupon(context.Background(), "SAVE10"); !errors.Is(err, down) {
		t.Fatalf("err = %v, want the store's", err)
	}
	if len(c.entries) != 0 {
		t.Errorf("a failed read was cached: %v", c.entries)
	}
}

type failingCoupons struct{ err error }

func (f failingCoupons) Coupon(context.Context, string) (catalog.Coupon, bool, error) {
	return catalog.Coupon{}, false, f.err
}
