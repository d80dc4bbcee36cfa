package app_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/orderpipe/orderpipe/catalog"
	"github.com/orderpipe/orderpipe/events"
	"github.com/orderpipe/orderpipe/handlers/billing"
	"github.com/orderpipe/orderpipe/handlers/inventory"
	"github.com/orderpipe/orderpipe/internal/testenv"
	"github.com/orderpipe/orderpipe/store"
	"github.com/orderpipe/orderpipe/topology"
)

// TestDuplicateDeliveriesChangeNothing publishes every event three times
// (the same event_id, as a shop retrying its publish would): each order is
// billed once, has its stock moved once and is confirmed once.
func TestDuplicateDeliveriesChangeNothing(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.addProducts(t, catalog.Product{SKU: "MUG", Name: "Mug", Price: 1299, Stock: 100})
	s.startWorker(t)

	var evs []events.Event
	for i := range 10 {
		evs = append(evs, s.placed(fmt.Sprintf("d%d", i), "", "MUG", 1))
	}
	for range 3 {
		s.publish(t, evs...)
	}
	s.waitProcessed(t, all3(10), 10)
	waitQueuesEmpty(t, s)

	checks := []struct{ name, query string }{
		{"invoices", `SELECT count(*) FROM invoices WHERE order_id LIKE $1`},
		{"reservations", `SELECT count(*) FROM reservations WHERE order_id LIKE $1`},
		{"stock movements", `SELECT count(*) FROM stock_movements WHERE order_id LIKE $1`},
		{"emails recorded", `SELECT count(*) FROM notifications WHERE order_id LIKE $1 AND status = 'sent'`},
	}
	for _, c := range checks {
		if n := s.queryInt(t, c.query, s.prefix+"%"); n != 10 {
			t.Errorf("%s = %d, want 10", c.name, n)
		}
	}
	if n := s.queryInt(t, `SELECT stock FROM products WHERE sku = $1`, string(s.sku("MUG"))); n != 90 {
		t.Errorf("stock = %d, want 90", n)
	}
	if n, err := testenv.MailCount(context.Background(), s.emailDomain()); err != nil || n != 10 {
		t.Errorf("emails in Mailpit = %d (%v), want 10", n, err)
	}
}

// waitQueuesEmpty waits until the test's queues and DLQs hold nothing.
func waitQueuesEmpty(t *testing.T, s *stack) {
	t.Helper()
	waitQueuesEmptyWithin(t, s, 30*time.Second)
}

func waitQueuesEmptyWithin(t *testing.T, s *stack, timeout time.Duration) {
	t.Helper()
	sqsc := sqs.NewFromConfig(s.env.AWS)
	testenv.Eventually(t, timeout, func() error {
		for _, q := range s.ap.Queues {
			for _, url := range []string{q.URL, q.DLQURL} {
				if n, err := topology.Depth(context.Background(), sqsc, url); err != nil || n != 0 {
					return fmt.Errorf("%s holds %d messages (%w)", url, n, err)
				}
			}
		}
		return nil
	})
}

// TestCouponLimitHoldsUnderConcurrency bills 40 orders at once, all with a
// coupon limited to 7 redemptions: exactly 7 invoices get the discount, and
// invoice numbers stay gapless.
func TestCouponLimitHoldsUnderConcurrency(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.addProducts(t, catalog.Product{SKU: "TEE", Name: "T-shirt", Price: 2500, Stock: 1000})
	limit := 7
	s.addCoupon(t, catalog.Coupon{Code: "LIMITED", Kind: catalog.CouponFixed, AmountOff: 500, MaxRedemptions: &limit})
	b := store.NewBilling(s.env.DB)
	h := billing.New(b, store.NewCatalog(s.env.DB), b)

	runConcurrently(t, 40, func(i int) error {
		return h.Handle(context.Background(), s.placed(fmt.Sprintf("c%d", i), "LIMITED", "TEE", 1))
	})
	if n := s.queryInt(t, `SELECT count(*) FROM invoices WHERE order_id LIKE $1 AND discount_cents = 500`, s.prefix+"%"); n != int64(limit) {
		t.Errorf("discounted invoices = %d, want %d", n, limit)
	}
	if n := s.queryInt(t, `SELECT count(*) FROM invoices WHERE order_id LIKE $1 AND coupon_note = 'coupon redemption limit reached'`, s.prefix+"%"); n != 40-int64(limit) {
		t.Errorf("invoices refused the coupon = %d, want %d", n, 40-limit)
	}
	if n := s.queryInt(t, `SELECT redemptions FROM coupons WHERE code = $1`, s.prefix+"LIMITED"); n != int64(limit) {
		t.Errorf("redemptions = %d, want %d", n, limit)
	}
	// Gapless: every committed number from 1 to the highest exists once.
	if gaps := s.queryInt(t, `SELECT max(invoice_number) - count(*) FROM invoices`); gaps != 0 {
		t.Errorf("invoice numbers have %d gaps", gaps)
	}
}

// TestNoOversellUnderConcurrency reserves 80 multi-item orders at once
// against little stock, the SKUs listed in random order: stock ends exactly
// at initial minus what the reserved orders took, never below zero, and no
// transaction deadlocks.
func TestNoOversellUnderConcurrency(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.addProducts(t,
		catalog.Product{SKU: "HOT", Name: "Hot item", Price: 100, Stock: 25},
		catalog.Product{SKU: "WARM", Name: "Warm item", Price: 100, Stock: 40},
		catalog.Product{SKU: "COLD", Name: "Cold item", Price: 100, Stock: 1000},
	)
	h := inventory.New(store.NewInventory(s.env.DB, s.top.Topic), store.NewCatalog(s.env.DB))
	skus := []string{"HOT", "WARM", "COLD"}
	runConcurrently(t, 80, func(i int) error {
		rng := rand.New(rand.NewPCG(uint64(i), 7))
		order := rng.Perm(3)
		items := []any{}
		for _, k := range order {
			items = append(items, skus[k], 1+rng.IntN(2))
		}
		return h.Handle(context.Background(), s.placed(fmt.Sprintf("n%d", i), "", items...))
	})
	for _, sku := range skus {
		var stock, initial, taken int64
		stock = s.queryInt(t, `SELECT stock FROM products WHERE sku = $1`, string(s.sku(sku)))
		initial = map[string]int64{"HOT": 25, "WARM": 40, "COLD": 1000}[sku]
		taken = s.queryInt(t, `SELECT coalesce(-sum(delta), 0) FROM stock_movements WHERE sku = $1`, string(s.sku(sku)))
		if stock < 0 || stock != initial-taken {
			t.Errorf("%s: stock %d, initial %d, taken by movements %d", sku, stock, initial, taken)
		}
	}
	reserved := s.queryInt(t, `SELECT count(*) FROM reservations WHERE order_id LIKE $1 AND status = 'reserved'`, s.prefix+"%")
	rejected := s.queryInt(t, `SELECT count(*) FROM reservations WHERE order_id LIKE $1 AND status = 'rejected'`, s.prefix+"%")
	if reserved+rejected != 80 || rejected == 0 {
		t.Errorf("reserved %d + rejected %d, want 80 with some rejected", reserved, rejected)
	}
	// Each rejection is cancelled through the outbox, for this test's topic
	// only: another pipeline's relay on the same database must not take it.
	if n := s.queryInt(t, `SELECT count(*) FROM outbox WHERE topic = $1 AND order_id LIKE $2 AND event_type = 'order.cancelled'`, s.top.Topic, s.prefix+"%"); n != rejected {
		t.Errorf("%d cancellations in this topic's outbox, want one per rejected order (%d)", n, rejected)
	}
	// All or nothing: a reserved order has one movement per SKU, a rejected none.
	if n := s.queryInt(t, `SELECT count(*) FROM reservations r WHERE order_id LIKE $1 AND
		(SELECT count(*) FROM stock_movements m WHERE m.order_id = r.order_id) <> CASE r.status WHEN 'reserved' THEN 3 ELSE 0 END`, s.prefix+"%"); n != 0 {
		t.Errorf("%d orders were partly reserved", n)
	}
}

// runConcurrently calls fn(0..n-1) at once and fails on any error.
func runConcurrently(t *testing.T, n int, fn func(i int) error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			if err := fn(i); err != nil {
				errs <- err
			}
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent call: %v", err)
	}
}
