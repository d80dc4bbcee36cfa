package app_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/orderpipe/orderpipe/catalog"
	"github.com/orderpipe/orderpipe/internal/testenv"
)

// The email claim's two duplicate windows, each staged deterministically
// with an SMTP server of the test's own, and the pool it must not starve.
// The workers are processes with their own /metrics, so the counters read
// are this test's alone.

// emailWorker starts a notification-only worker process that sends through
// srv, with a short claim (EMAIL_CLAIM_TTL 11s: a 1s send, 5s to record,
// 5s of margin) so a kept claim runs out within the test.
func (s *stack) emailWorker(t *testing.T, srv *testenv.SMTPServer, extra ...string) (*proc, string) {
	t.Helper()
	return s.startWithMetrics(t, "worker", append([]string{
		"SMTP_ADDR=" + srv.Addr, "SMTP_TIMEOUT=1s", "EMAIL_CLAIM_TTL=11s", "WORKER_HANDLERS=notification",
	}, extra...)...)
}

// waitEmailRecorded waits until the order's email is recorded as sent.
func (s *stack) waitEmailRecorded(t *testing.T, orderID string, within time.Duration) {
	t.Helper()
	testenv.Eventually(t, within, func() error {
		if n := s.queryInt(t, `SELECT count(*) FROM notifications WHERE order_id = $1 AND status = 'sent'`, orderID); n != 1 {
			return fmt.Errorf("email of %s not recorded as sent", orderID)
		}
		return nil
	})
}

// metricsNow scrapes a worker's counters.
func metricsNow(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	m, err := scrape(t.Context(), "http://"+addr+"/metrics")
	if err != nil {
		t.Fatalf("scrape /metrics: %v", err)
	}
	return m
}

func expectMetric(t *testing.T, m map[string]float64, series string, want float64) {
	t.Helper()
	if m[series] != want {
		t.Errorf("%s = %v, want %v", series, m[series], want)
	}
}

func expectLogged(t *testing.T, p *proc, msg string) {
	t.Helper()
	b, err := os.ReadFile(p.log)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), msg) {
		t.Errorf("the worker did not log %q", msg)
	}
}

// TestEmailOfUnknownOutcomeIsNotResentByTheSameDelivery: the SMTP server
// reads the whole confirmation and drops the connection before its verdict.
// The email may be out, so the delivery that sent it must not send it again
// (an in-process retry would, at once and uncounted); the claim is kept
// until it runs out, and only then does a later delivery send it again, as
// a takeover that is counted and logged.
func TestEmailOfUnknownOutcomeIsNotResentByTheSameDelivery(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.addProducts(t, catalog.Product{SKU: "MUG", Name: "Mug", Price: 1200, Stock: 10})
	srv := testenv.StartSMTP(t)
	srv.DropNext(1)
	p, addr := s.emailWorker(t, srv)
	ev := s.placed("unknown", "", "MUG", 1)
	s.publish(t, ev)

	s.waitEmailRecorded(t, ev.Order.OrderID, 60*time.Second)
	if got := srv.Received(ev.Order.Customer.Email); len(got) != 2 {
		t.Errorf("the server read %d copies of the email, want 2 (the unknown one, then the takeover after the claim ran out)", len(got))
	}
	m := metricsNow(t, addr)
	expectMetric(t, m, `orderpipe_email_duplicate_risk_total{cause="outcome_unknown"}`, 1)
	expectMetric(t, m, `orderpipe_email_duplicate_risk_total{cause="takeover"}`, 1)
	expectMetric(t, m, `orderpipe_emails_sent_total{event_type="order.placed"}`, 1)
	expectLogged(t, p, "sending an email whose earlier claim ran out unrecorded")
}

// TestAcceptedButUnrecordedEmailIsCounted: the server accepts the email,
// and the database cannot take its record (another transaction holds the
// claim's row for longer than the record window). The email is out and
// unrecorded: counted as "unrecorded", never resent by the same delivery,
// and sent again only as a counted takeover once the claim ran out.
func TestAcceptedButUnrecordedEmailIsCounted(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.addProducts(t, catalog.Product{SKU: "MUG", Name: "Mug", Price: 1200, Stock: 10})
	srv := testenv.StartSMTP(t)
	ctx := context.Background()
	locked := make(chan error, 1)
	var once sync.Once
	srv.OnData(func(m testenv.ReceivedMail) {
		once.Do(func() {
			eventID, _, _ := strings.Cut(m.MessageID, ".")
			tx, err := s.env.DB.Pool().Begin(ctx)
			if err == nil {
				_, err = tx.Exec(ctx, `SELECT 1 FROM notifications WHERE event_id = $1::uuid FOR UPDATE`, eventID)
			}
			locked <- err
			if err == nil {
				// Held past the record window (5s with these settings).
				time.AfterFunc(7*time.Second, func() { _ = tx.Rollback(ctx) })
			}
		})
	})
	p, addr := s.emailWorker(t, srv)
	ev := s.placed("unrecorded", "", "MUG", 1)
	s.publish(t, ev)
	select {
	case err := <-locked:
		if err != nil {
			t.Fatalf("lock the claim's row: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the worker sent no email within 30s")
	}

	s.waitEmailRecorded(t, ev.Order.OrderID, 60*time.Second)
	if got := srv.Received(ev.Order.Customer.Email); len(got) != 2 {
		t.Errorf("the server read %d copies of the email, want 2 (the unrecorded one, then the takeover)", len(got))
	}
	m := metricsNow(t, addr)
	expectMetric(t, m, `orderpipe_email_duplicate_risk_total{cause="unrecorded"}`, 1)
	expectMetric(t, m, `orderpipe_email_duplicate_risk_total{cause="takeover"}`, 1)
	expectLogged(t, p, "email may be out but is not recorded")
	expectLogged(t, p, "sending an email whose earlier claim ran out unrecorded")
}

// TestSlowSMTPDoesNotStarveTheOtherHandlers: the SMTP server holds every
// verdict. No email may hold a pooled connection across the SMTP
// conversation, so billing and inventory, sharing the worker's three
// connections with twenty stuck emails, still get through every order.
func TestSlowSMTPDoesNotStarveTheOtherHandlers(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.addProducts(t, catalog.Product{SKU: "TEE", Name: "T-shirt", Price: 2500, Stock: 1000})
	srv := testenv.StartSMTP(t)
	release := make(chan struct{})
	srv.OnData(func(testenv.ReceivedMail) {
		select {
		case <-release:
		case <-time.After(90 * time.Second): // bound: the test ends well before
		}
	})
	s.startProcess(t, "worker", "SMTP_ADDR="+srv.Addr, "SMTP_TIMEOUT=2m", "EMAIL_CLAIM_TTL=3m", "DB_MAX_CONNS=3")
	const orders = 30
	s.publishOrders(t, orders, "slow")
	testenv.Eventually(t, 60*time.Second, func() error {
		for _, h := range []string{"billing", "inventory"} {
			if n := s.queryInt(t, `SELECT count(*) FROM processed_events WHERE handler = $1 AND order_id LIKE $2`, h, s.prefix+"%"); n != orders {
				return fmt.Errorf("%s processed %d of %d orders while every email waits for the SMTP server", h, n, orders)
			}
		}
		return nil
	})
	if n := s.queryInt(t, `SELECT count(*) FROM notifications WHERE order_id LIKE $1 AND status = 'sent'`, s.prefix+"%"); n != 0 {
		t.Fatalf("%d emails recorded while the server held every verdict", n)
	}
	close(release)
	s.waitProcessed(t, map[string]int64{"notification": orders}, 0)
}
