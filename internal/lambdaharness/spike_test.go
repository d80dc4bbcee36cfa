package lambdaharness_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/orderpipe/orderpipe/catalog"
	"github.com/orderpipe/orderpipe/events"
	"github.com/orderpipe/orderpipe/internal/lambdaharness"
	"github.com/orderpipe/orderpipe/internal/testenv"
	"github.com/orderpipe/orderpipe/store/admin"
	"github.com/orderpipe/orderpipe/topology"
)

// TestPromotionSpikeThroughTheFunctions is internal/app's
// TestPromotionSpikeSettlesEveryOrder through the functions: 100
// orders for a hot SKU with 10 units, published at once. Inventory's
// function writes the 90 rejections' cancellations to the outbox and
// relays them itself after each batch; billing voids, notification writes
// one cancellation email each. Exactly 10 fulfilled, 90 cancelled out of
// stock, stock 0, no open invoice for a cancelled order, nothing
// inconsistent, nothing left in the outbox or the queues.
func TestPromotionSpikeThroughTheFunctions(t *testing.T) {
	t.Parallel()
	const orders, stock = 100, 10
	s := newStack(t)
	db := s.env.DB
	s.addProducts(t, db, catalog.Product{SKU: "HOT", Name: "Promo deal", Price: 1999, Stock: stock})
	p, _ := s.startFunctions(t, func(c *lambdaharness.PipelineConfig) { c.ESM.MaxConcurrency = 3 })
	evs := make([]events.Event, orders)
	for i := range evs {
		evs[i] = s.placed(fmt.Sprintf("s%d", i), "HOT", 1)
	}
	s.publish(t, evs...)

	var st admin.OrderStates
	testenv.Eventually(t, time.Minute, func() error {
		var err error
		if st, err = admin.States(context.Background(), db, s.prefix); err != nil {
			return err
		}
		if got := st.Fulfilled + st.CancelledOutOfStock + st.CancelledByCustomer; got != orders || st.OutboxPending != 0 {
			return fmt.Errorf("%d of %d orders settled (%+v)", got, orders, st)
		}
		return nil
	})
	s.waitQueuesEmpty(t, time.Minute)
	st, err := admin.States(context.Background(), db, s.prefix)
	if err != nil {
		t.Fatalf("order states: %v", err)
	}
	left := queryInt(t, db, `SELECT stock FROM products WHERE sku = $1`, string(s.sku("HOT")))
	if st.Fulfilled != stock || st.CancelledOutOfStock != orders-stock || st.Inconsistent != 0 || left != 0 {
		t.Errorf("fulfilled %d, cancelled out of stock %d, inconsistent %d (%v), stock left %d; want %d, %d, 0, 0",
			st.Fulfilled, st.CancelledOutOfStock, st.Inconsistent, st.InconsistentOrders, left, stock, orders-stock)
	}
	like := s.prefix + "%"
	if open := queryInt(t, db, `SELECT count(*) FROM invoices i JOIN billing_cancellations c USING (order_id) WHERE i.order_id LIKE $1 AND i.status = 'issued'`, like); open != 0 {
		t.Errorf("%d cancelled orders still have an open invoice", open)
	}
	testenv.Eventually(t, 30*time.Second, func() error {
		confirmations := queryInt(t, db, `SELECT count(*) FROM notifications WHERE order_id LIKE $1 AND kind = 'order.placed' AND status = 'sent'`, like)
		cancellations := queryInt(t, db, `SELECT count(*) FROM notifications WHERE order_id LIKE $1 AND kind = 'order.cancelled' AND status = 'sent'`, like)
		mails, err := testenv.MailCount(context.Background(), s.emailDomain())
		if err != nil {
			return err
		}
		if confirmations != orders || cancellations != orders-stock || mails != 2*orders-stock {
			return fmt.Errorf("confirmations %d, cancellation emails %d, Mailpit %d; want %d, %d, %d", confirmations, cancellations, mails, orders, orders-stock, 2*orders-stock)
		}
		return nil
	})
	// The compensations went through the functions' own relay.
	if st := p.Stats()["billing"]; st.Records < orders+(orders-stock) {
		t.Errorf("billing's function saw %d records, want at least %d (the orders and their cancellations)", st.Records, 2*orders-stock)
	}
}

// TestScheduledInvocationRelaysTheOutbox: a compensation left unsent in
// the outbox (a relay that failed or was cut short) is published by the
// inventory function's scheduled invocation (EventBridge, every minute in
// the stack), through aws-lambda-go's handler interface.
func TestScheduledInvocationRelaysTheOutbox(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	db := s.env.DB
	placed := s.placed("left", "HOT", 1)
	cancel := placed
	cancel.EventID, cancel.EventType, cancel.Reason = events.EventID(uuid.NewString()), events.OrderCancelled, "out_of_stock"
	body := mustJSON(t, cancel)
	if _, err := db.Pool().Exec(context.Background(), `INSERT INTO outbox (event_id, event_type, body, topic, order_id) VALUES ($1, $2, $3, $4, $5)`,
		string(cancel.EventID), string(cancel.EventType), body, s.top.Topic, cancel.Order.OrderID); err != nil {
		t.Fatal(err)
	}
	fc := s.functionConfig(testenv.Logger()).Function
	fc.Handler = "inventory"
	h, shutdown, err := lambdaharness.Environment(fc)(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer shutdown()
	ctx, cancelCtx := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancelCtx()
	out, err := h.Invoke(ctx, []byte(`{"version":"0","id":"e1","detail-type":"Scheduled Event","source":"aws.events","account":"000000000000","time":"2026-11-29T10:00:00Z","region":"us-east-1","resources":[],"detail":{}}`))
	if err != nil || string(out) != `{"published":1}` {
		t.Fatalf("scheduled invocation = %s, %v; want {\"published\":1}", out, err)
	}
	if n := queryInt(t, db, `SELECT count(*) FROM outbox WHERE event_id = $1 AND sent_at IS NOT NULL`, string(cancel.EventID)); n != 1 {
		t.Errorf("the outbox row is not marked sent")
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		if n, err := topology.Depth(context.Background(), s.sqs, s.ap.Queues["billing"].URL); err != nil || n != 1 {
			return fmt.Errorf("billing's queue holds %d messages, want the cancellation: %w", n, err)
		}
		return nil
	})
}
