package app_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/orderpipe/orderpipe/catalog"
	"github.com/orderpipe/orderpipe/events"
	"github.com/orderpipe/orderpipe/internal/testenv"
	"github.com/orderpipe/orderpipe/store/admin"
	"github.com/orderpipe/orderpipe/topology"
)

// TestPromotionSpikeSettlesEveryOrder: 100 orders for a hot SKU with 10
// units (the promotion's ratio, at a size that runs in seconds), published
// as fast as possible to three worker processes. Exactly 10 are fulfilled;
// the other 90 are rejected by inventory, cancelled
// through the outbox (reason out_of_stock), left without an open invoice and
// told by email; stock ends at exactly 0; no order is inconsistent.
func TestPromotionSpikeSettlesEveryOrder(t *testing.T) {
	t.Parallel()
	spike(t, spikeCase{})
}

// TestPromotionSpikeWithAKilledWorkerAndRelay: the same, with one worker
// killed mid-run and the outbox relay of another stopped by SIGTERM
// half-way: the survivors take over and the end state is the same.
func TestPromotionSpikeWithAKilledWorkerAndRelay(t *testing.T) {
	t.Parallel()
	spike(t, spikeCase{kill: true})
}

// TestPromotionSpikeWithCustomerCancellations: the shop cancels 20 of the
// orders while they are being processed, some before and some after their
// placement: every order still ends fulfilled, cancelled out of stock or
// cancelled by the customer, with one cancellation email at most.
func TestPromotionSpikeWithCustomerCancellations(t *testing.T) {
	t.Parallel()
	spike(t, spikeCase{cancel: 20})
}

type spikeCase struct {
	kill   bool
	cancel int
}

func spike(t *testing.T, sc spikeCase) {
	t.Helper()
	const orders, stock = 100, 10
	s := newStack(t, visibility(5)) // a killed worker's messages come back within seconds
	s.addProducts(t, catalog.Product{SKU: "HOT", Name: "Promo deal", Price: 1999, Stock: stock})
	var ps []*proc
	var addrs []string
	for i := range 3 {
		p, addr := s.startWithMetrics(t, fmt.Sprintf("worker-%d", i))
		ps = append(ps, p)
		addrs = append(addrs, addr)
	}
	t.Cleanup(func() { // registered before the waits: it runs when one of them fails
		if t.Failed() {
			diagnose(t, s)
		}
	})
	evs := make([]events.Event, orders)
	for i := range evs {
		evs[i] = s.placed(fmt.Sprintf("s%d", i), "", "HOT", 1)
	}
	rng := rand.New(rand.NewPCG(11, uint64(sc.cancel)))
	var cancels []events.Event
	for _, i := range rng.Perm(orders)[:sc.cancel] {
		cancels = append(cancels, cancelled(evs[i], "customer_request"))
	}
	// Half the cancellations race ahead of their orders, half follow them.
	s.publish(t, cancels[:len(cancels)/2]...)
	s.publish(t, evs...)
	if sc.kill {
		s.waitBilled(t, orders/10)
		_ = ps[0].cmd.Process.Kill()
		_ = ps[1].cmd.Process.Signal(syscall.SIGTERM) // and its relay with it
		t.Logf("worker-0 killed, worker-1 stopped at %d invoices", s.billed(t))
		_, addr := s.startWithMetrics(t, "worker-3")
		addrs = append(addrs[2:], addr) // the survivors
	}
	// An email the killed worker had sent and not yet recorded (one round
	// trip) is sent again by a survivor, which counts the takeover.
	takeovers := func() (int, error) {
		if !sc.kill {
			return 0, nil
		}
		n := 0.0
		for _, a := range addrs {
			m, err := scrape(t.Context(), "http://"+a+"/metrics")
			if err != nil {
				return 0, fmt.Errorf("scrape %s: %w", a, err)
			}
			n += m[`orderpipe_email_duplicate_risk_total{cause="takeover"}`]
		}
		return int(n), nil
	}
	s.publish(t, cancels[len(cancels)/2:]...)

	var st admin.OrderStates
	testenv.Eventually(t, time.Minute, func() error {
		var err error
		if st, err = admin.States(context.Background(), s.env.DB, s.prefix); err != nil {
			return err
		}
		if got := st.Fulfilled + st.CancelledOutOfStock + st.CancelledByCustomer; got != orders || st.OutboxPending != 0 {
			return fmt.Errorf("%d of %d orders settled (%+v)", got, orders, st)
		}
		return nil
	})
	waitQueuesEmptyWithin(t, s, time.Minute)
	st, err := admin.States(context.Background(), s.env.DB, s.prefix)
	if err != nil {
		t.Fatalf("order states: %v", err)
	}
	if st.Inconsistent != 0 {
		t.Errorf("%d orders inconsistent with the queues empty: %v", st.Inconsistent, st.InconsistentOrders)
	}
	left := s.queryInt(t, `SELECT stock FROM products WHERE sku = $1`, string(s.sku("HOT")))
	sold := s.queryInt(t, `SELECT coalesce(-sum(delta), 0) FROM stock_movements WHERE sku = $1`, string(s.sku("HOT")))
	if st.Fulfilled != stock-left || left < 0 || sold != stock-left {
		t.Errorf("fulfilled %d, stock left %d, taken by movements %d (of %d)", st.Fulfilled, left, sold, stock)
	}
	if sc.cancel == 0 && (st.Fulfilled != stock || st.CancelledOutOfStock != orders-stock || left != 0) {
		t.Errorf("fulfilled %d, cancelled out of stock %d, stock left %d; want %d, %d, 0", st.Fulfilled, st.CancelledOutOfStock, left, stock, orders-stock)
	}
	if open := s.queryInt(t, `SELECT count(*) FROM invoices i JOIN billing_cancellations c USING (order_id) WHERE i.order_id LIKE $1 AND i.status = 'issued'`, s.prefix+"%"); open != 0 {
		t.Errorf("%d cancelled orders still have an open invoice", open)
	}
	// One confirmation per order, one cancellation email per cancelled order.
	cancelledOrders := st.CancelledOutOfStock + st.CancelledByCustomer
	like := s.prefix + "%"
	testenv.Eventually(t, time.Minute, func() error {
		confirmations := s.queryInt(t, `SELECT count(*) FROM notifications WHERE order_id LIKE $1 AND kind = 'order.placed' AND status = 'sent'`, like)
		cancellations := s.queryInt(t, `SELECT count(*) FROM notifications WHERE order_id LIKE $1 AND kind = 'order.cancelled' AND status = 'sent'`, like)
		if confirmations != orders || cancellations != cancelledOrders {
			return fmt.Errorf("confirmations %d, cancellation emails %d; want %d, %d", confirmations, cancellations, orders, cancelledOrders)
		}
		return nil
	})
	testenv.Eventually(t, 30*time.Second, func() error {
		n, err := testenv.MailCount(context.Background(), s.emailDomain())
		if err != nil {
			return err
		}
		repeats, err := takeovers()
		if err != nil {
			return err
		}
		if want := orders + cancelledOrders; int64(n) < want || int64(n) > want+int64(repeats) {
			return fmt.Errorf("Mailpit holds %d emails, want %d (+ at most %d sent again after the kill)", n, want, repeats)
		}
		return nil
	})
	t.Logf("%+v; stock left %d", st, left)
}

// diagnose logs, for a failed spike, each queue's depth and its DLQ's, the
// ledger markers by handler and event type, and the dead letters with
// their attributes: whether a message was never delivered, is stuck in
// flight, or was dead-lettered (and why).
func diagnose(t *testing.T, s *stack) {
	t.Helper()
	ctx := context.Background()
	sqsc := sqs.NewFromConfig(s.env.AWS)
	like := s.prefix + "%"
	for h, q := range s.ap.Queues {
		n, err := topology.Depth(ctx, sqsc, q.URL)
		d, derr := topology.Depth(ctx, sqsc, q.DLQURL)
		t.Logf("diagnosis: %s queue depth %d (%v), DLQ %d (%v); ledger markers: %d placed, %d cancelled", h, n, err, d, derr,
			s.queryInt(t, `SELECT count(*) FROM processed_events WHERE handler = $1 AND order_id LIKE $2 AND event_type = 'order.placed'`, h, like),
			s.queryInt(t, `SELECT count(*) FROM processed_events WHERE handler = $1 AND order_id LIKE $2 AND event_type = 'order.cancelled'`, h, like))
	}
	for h, q := range s.ap.Queues {
		out, err := sqsc.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: &q.DLQURL, MaxNumberOfMessages: 10,
			MessageAttributeNames: []string{"All"}, MessageSystemAttributeNames: []sqstypes.MessageSystemAttributeName{"All"}})
		if err != nil {
			t.Logf("diagnosis: read %s DLQ: %v", h, err)
			continue
		}
		for _, m := range out.Messages {
			attrs := map[string]string{}
			for k, v := range m.MessageAttributes {
				attrs[k] = aws.ToString(v.StringValue)
			}
			t.Logf("diagnosis: %s DLQ message %s: system %v; attributes %v; body %.300s", h, aws.ToString(m.MessageId), m.Attributes, attrs, aws.ToString(m.Body))
		}
	}
}
