package app_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/orderpipe/orderpipe/catalog"
)

var all3 = func(n int64) map[string]int64 {
	return map[string]int64{"billing": n, "inventory": n, "notification": n}
}

type invoiceRow struct {
	Subtotal, Discount, Total int64
	Coupon, Note              string
	Lines                     int64
}

// TestInvoiceTotalsMatchHandComputedCents runs orders through the whole
// pipeline (SNS, SQS, worker, PgBouncer, PostgreSQL, SMTP) and checks each
// invoice against cents computed by hand.
func TestInvoiceTotalsMatchHandComputedCents(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.addProducts(t,
		catalog.Product{SKU: "MUG", Name: "Mug", Price: 1299, Stock: 100},
		catalog.Product{SKU: "TEE", Name: "T-shirt", Price: 2500, Stock: 100},
		catalog.Product{SKU: "PEN", Name: "Pen", Price: 349, Stock: 100},
	)
	expired := time.Date(2021, 1, 1, 0, 0, 0, 0, time.UTC)
	s.addCoupon(t, catalog.Coupon{Code: "SAVE10", Kind: catalog.CouponPercent, PercentBP: 1000})
	s.addCoupon(t, catalog.Coupon{Code: "TENOFF", Kind: catalog.CouponFixed, AmountOff: 1000, MinOrder: 5000})
	s.addCoupon(t, catalog.Coupon{Code: "OLD", Kind: catalog.CouponPercent, PercentBP: 5000, ValidUntil: &expired})
	s.startWorker(t)

	orders := []struct {
		id, coupon string
		items      []any
		want       invoiceRow
	}{
		// 2×12.99 + 25.00 = 50.98
		{"o1", "", []any{"MUG", 2, "TEE", 1}, invoiceRow{5098, 0, 5098, "", "", 2}},
		// 10 % of 50.98 = 5.098 → 5.10 (half up)
		{"o2", "SAVE10", []any{"MUG", 2, "TEE", 1}, invoiceRow{5098, 510, 4588, "SAVE10", "", 2}},
		// 50.98 ≥ 50.00 minimum → 10.00 off
		{"o3", "TENOFF", []any{"MUG", 2, "TEE", 1}, invoiceRow{5098, 1000, 4098, "TENOFF", "", 2}},
		// 25.98 < 50.00 minimum → no discount, reason kept
		{"o4", "TENOFF", []any{"MUG", 2}, invoiceRow{2598, 0, 2598, "", "order below the coupon's minimum ($25.98 < $50.00)", 1}},
		// expired coupon → full price
		{"o5", "OLD", []any{"PEN", 3}, invoiceRow{1047, 0, 1047, "", "coupon expired", 1}},
		// PEN listed twice → one line of 3; 12.99 + 10.47 = 23.46; 10 % = 2.346 → 2.35
		{"o6", "SAVE10", []any{"PEN", 1, "MUG", 1, "PEN", 2}, invoiceRow{2346, 235, 2111, "SAVE10", "", 2}},
		// unknown coupon → full price
		{"o7", "NOPE", []any{"TEE", 1}, invoiceRow{2500, 0, 2500, "", "coupon unknown", 1}},
	}
	for _, o := range orders {
		s.publish(t, s.placed(o.id, o.coupon, o.items...))
	}
	s.waitProcessed(t, all3(int64(len(orders))), len(orders))

	for _, o := range orders {
		var got invoiceRow
		err := s.env.DB.Pool().QueryRow(context.Background(), `
			SELECT subtotal_cents, discount_cents, total_cents, coalesce(coupon_code, ''), coalesce(coupon_note, ''),
			       (SELECT count(*) FROM invoice_lines l WHERE l.invoice_number = i.invoice_number)
			FROM invoices i WHERE order_id = $1 AND status = 'issued'`, s.prefix+o.id).
			Scan(&got.Subtotal, &got.Discount, &got.Total, &got.Coupon, &got.Note, &got.Lines)
		if err != nil {
			t.Fatalf("invoice of %s: %v", o.id, err)
		}
		got.Coupon = strings.TrimPrefix(got.Coupon, s.prefix)
		if diff := cmp.Diff(o.want, got); diff != "" {
			t.Errorf("invoice of %s (-want +got):\n%s", o.id, diff)
		}
	}
	if n := s.queryInt(t, `SELECT redemptions FROM coupons WHERE code = $1`, s.prefix+"SAVE10"); n != 2 {
		t.Errorf("SAVE10 redeemed %d times, want 2", n)
	}
	// Lines carry catalog prices, never the event's.
	if n := s.queryInt(t, `SELECT count(*) FROM invoice_lines l JOIN products p USING (sku)
		WHERE l.sku LIKE $1 AND l.unit_price_cents <> p.price_cents`, s.prefix+"%"); n != 0 {
		t.Errorf("%d invoice lines differ from catalog prices", n)
	}
}

// TestStockAllOrNothingAndCancellation checks that an order is reserved
// whole or rejected whole, and that a cancellation voids the invoice, puts the
// stock back and emails the customer.
func TestStockAllOrNothingAndCancellation(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.addProducts(t,
		catalog.Product{SKU: "A", Name: "Scarce", Price: 1000, Stock: 3},
		catalog.Product{SKU: "B", Name: "Plenty", Price: 500, Stock: 10},
	)
	s.startWorker(t)
	stock := func(sku string) int64 {
		return s.queryInt(t, `SELECT stock FROM products WHERE sku = $1`, string(s.sku(sku)))
	}

	x := s.placed("x", "", "A", 2, "B", 1)
	s.publish(t, x)
	s.waitProcessed(t, all3(1), 1)
	y := s.placed("y", "", "B", 5, "A", 2) // B is available, A is not: nothing may be taken
	s.publish(t, y)
	// y is rejected, and inventory cancels it through the outbox: every
	// handler sees x, y and y's out-of-stock cancellation (a confirmation
	// and a cancellation email for y).
	s.waitProcessed(t, all3(3), 3)
	if n := s.queryInt(t, `SELECT count(*) FROM invoices WHERE order_id = $1 AND status = 'issued'`, y.Order.OrderID); n != 0 {
		t.Errorf("rejected order y has %d open invoices, want 0", n)
	}

	if a, b := stock("A"), stock("B"); a != 1 || b != 9 {
		t.Fatalf("stock after x and y: A=%d B=%d, want A=1 B=9", a, b)
	}
	var status, reason string
	if err := s.env.DB.Pool().QueryRow(context.Background(), `SELECT status, coalesce(reason, '') FROM reservations WHERE order_id = $1`, y.Order.OrderID).Scan(&status, &reason); err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("insufficient_stock: %s (want 2, have 1)", s.sku("A")); status != "rejected" || reason != want {
		t.Errorf("reservation of y = %s %q, want rejected %q", status, reason, want)
	}
	if n := s.queryInt(t, `SELECT count(*) FROM stock_movements WHERE order_id = $1`, y.Order.OrderID); n != 0 {
		t.Errorf("rejected order y has %d stock movements, want 0", n)
	}

	s.publish(t, cancelled(x, "customer_request"))
	s.waitProcessed(t, all3(4), 4)
	if a, b := stock("A"), stock("B"); a != 3 || b != 10 {
		t.Errorf("stock after cancelling x: A=%d B=%d, want A=3 B=10", a, b)
	}
	if n := s.queryInt(t, `SELECT count(*) FROM invoices WHERE order_id = $1 AND status = 'void'`, x.Order.OrderID); n != 1 {
		t.Errorf("voided invoices of x = %d, want 1", n)
	}
	if n := s.queryInt(t, `SELECT count(*) FROM reservations WHERE order_id = $1 AND status = 'released'`, x.Order.OrderID); n != 1 {
		t.Errorf("released reservations of x = %d, want 1", n)
	}
}
