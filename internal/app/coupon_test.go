package app_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/orderpipe/orderpipe/catalog"
	"github.com/orderpipe/orderpipe/internal/app"
	"github.com/orderpipe/orderpipe/internal/testenv"
)

// TestCancellationGivesTheCouponBack: a coupon good for one redemption is
// redeemed by the first order; once that order is cancelled, its invoice is
// voided and the redemption given back, so the next order gets the
// discount. A second order placed before the cancellation was refused the
// coupon (limit reached) and keeps its full price.
func TestCancellationGivesTheCouponBack(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.addProducts(t, catalog.Product{SKU: "MUG", Name: "Mug", Price: 2000, Stock: 100})
	one := 1
	s.addCoupon(t, catalog.Coupon{Code: "ONCE", Kind: catalog.CouponFixed, AmountOff: 500, MaxRedemptions: &one})
	s.startWorker(t, onlyBilling)
	discount := func(orderID string) int64 {
		return s.queryInt(t, `SELECT discount_cents FROM invoices WHERE order_id = $1`, s.prefix+orderID)
	}
	redemptions := func() int64 {
		return s.queryInt(t, `SELECT redemptions FROM coupons WHERE code = $1`, s.prefix+"ONCE")
	}
	waitBilled := func(n int64) {
		t.Helper()
		testenv.Eventually(t, 30*time.Second, func() error {
			if got := s.queryInt(t, `SELECT count(*) FROM processed_events WHERE handler = 'billing' AND order_id LIKE $1`, s.prefix+"%"); got != n {
				return fmt.Errorf("billing handled %d events, want %d", got, n)
			}
			return nil
		})
	}

	first := s.placed("first", "ONCE", "MUG", 1)
	s.publish(t, first)
	waitBilled(1)
	s.publish(t, s.placed("second", "ONCE", "MUG", 1))
	waitBilled(2)
	if d, d2, r := discount("first"), discount("second"), redemptions(); d != 500 || d2 != 0 || r != 1 {
		t.Fatalf("before the cancellation: discounts %d and %d, redemptions %d; want 500, 0 (limit reached), 1", d, d2, r)
	}

	s.publish(t, cancelled(first, "customer_request"))
	waitBilled(3)
	if r := redemptions(); r != 0 {
		t.Errorf("after the cancellation the coupon has %d redemptions, want 0 (given back)", r)
	}
	if n := s.queryInt(t, `SELECT count(*) FROM invoices WHERE order_id = $1 AND status = 'void'`, first.Order.OrderID); n != 1 {
		t.Error("the cancelled order's invoice is not void")
	}
	s.publish(t, s.placed("third", "ONCE", "MUG", 1))
	waitBilled(4)
	if d := discount("third"); d != 500 {
		t.Errorf("the order after the cancellation got a discount of %d, want 500 (the coupon given back)", d)
	}
}

// onlyBilling runs the billing handler alone.
func onlyBilling(c *app.Config) { c.Handlers = []string{"billing"} }
