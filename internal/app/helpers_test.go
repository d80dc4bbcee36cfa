package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/google/uuid"

	"github.com/orderpipe/orderpipe/catalog"
	"github.com/orderpipe/orderpipe/events"
	"github.com/orderpipe/orderpipe/internal/app"
	"github.com/orderpipe/orderpipe/internal/testenv"
	"github.com/orderpipe/orderpipe/mailer"
	"github.com/orderpipe/orderpipe/store"
	"github.com/orderpipe/orderpipe/store/redisstore"
	"github.com/orderpipe/orderpipe/topology"
	"github.com/orderpipe/orderpipe/worker"
)

// stack is one test's pipeline: its own topology, catalog names and email
// domain, and a worker running in-process.
type stack struct {
	env    *testenv.Env
	prefix string
	top    topology.Topology
	ap     topology.Applied
	pub    *events.Publisher
}

func newStack(t *testing.T, adjust ...func(*topology.Topology)) *stack {
	t.Helper()
	env := testenv.Open(t, "app")
	top, ap := env.Topology(t, adjust...)
	pub, err := events.NewPublisher(sns.NewFromConfig(env.AWS), events.PublisherConfig{TopicARN: ap.TopicARN})
	if err != nil {
		t.Fatal(err)
	}
	return &stack{env: env, prefix: strings.TrimSuffix(top.Topic, "orders"), top: top, ap: ap, pub: pub}
}

// startWorker runs a worker in-process until the test ends; opts adjust its
// configuration. Each test's Redis keys live under their own prefix.
func (s *stack) startWorker(t *testing.T, opts ...func(*app.Config)) {
	t.Helper()
	cfg := app.Config{
		AWS:      s.env.AWS,
		Topology: s.top,
		Store:    store.Config{URL: s.env.DBURL, MaxConns: 8},
		Redis:    redisstore.Config{URL: testenv.RedisURL, KeyPrefix: "orderpipe-test:" + s.prefix},
		SMTP:     mailer.Config{Addr: testenv.SMTPAddr},
		Consumer: worker.Config{WaitTime: time.Second, Redelivery: worker.ExponentialRedelivery{Base: time.Second, Max: 2 * time.Second}},
		Logger:   testenv.Logger(),
	}
	// Unless ORDERPIPE_TEST_LOG asks for every line, keep the worker's
	// warnings and errors for the report of a failed test.
	var logged lockedBuffer
	if os.Getenv("ORDERPIPE_TEST_LOG") != "1" {
		cfg.Logger = slog.New(slog.NewJSONHandler(&logged, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	for _, o := range opts {
		o(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx, cfg) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("worker: %v", err)
		}
		if t.Failed() {
			b := logged.bytes()
			t.Logf("worker log, warnings and errors by message:\n%s\nthe last of them:\n%s", warnings(b), lastLines(b, 15))
		}
	})
}

// lockedBuffer is an in-process worker's log, written from many goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lockedBuffer) bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return bytes.Clone(l.buf.Bytes())
}

// lastLines returns the last n lines of log, each cut to 500 bytes.
func lastLines(log []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(log)), "\n")
	lines = lines[max(len(lines)-n, 0):]
	for i, l := range lines {
		if len(l) > 500 {
			lines[i] = l[:500] + "…"
		}
	}
	return strings.Join(lines, "\n")
}

// sku names a product of this test's own catalog.
func (s *stack) sku(name string) events.SKU { return events.SKU(s.prefix + name) }

// addProducts inserts this test's catalog.
func (s *stack) addProducts(t *testing.T, ps ...catalog.Product) {
	t.Helper()
	for _, p := range ps {
		_, err := s.env.DB.Pool().Exec(context.Background(),
			`INSERT INTO products (sku, name, price_cents, stock) VALUES ($1, $2, $3, $4)`,
			string(s.sku(string(p.SKU))), p.Name, int64(p.Price), p.Stock)
		if err != nil {
			t.Fatalf("add product %s: %v", p.SKU, err)
		}
	}
}

// addCoupon inserts a coupon named prefix+code.
func (s *stack) addCoupon(t *testing.T, c catalog.Coupon) {
	t.Helper()
	_, err := s.env.DB.Pool().Exec(context.Background(), `
		INSERT INTO coupons (code, kind, percent_bp, amount_off_cents, min_order_cents, valid_from, valid_until, max_redemptions)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		s.prefix+c.Code, string(c.Kind), c.PercentBP, int64(c.AmountOff), int64(c.MinOrder), c.ValidFrom, c.ValidUntil, c.MaxRedemptions)
	if err != nil {
		t.Fatalf("add coupon %s: %v", c.Code, err)
	}
}

func (s *stack) emailDomain() string { return strings.TrimSuffix(s.prefix, "-") + ".example.com" }

// placed builds an order.placed event of this test: items alternate SKU name
// and quantity; coupon is a code without the prefix, or "".
func (s *stack) placed(orderID, coupon string, items ...any) events.Event {
	o := events.Order{
		OrderID:  s.prefix + orderID,
		Customer: events.Customer{ID: "cus-" + orderID, Email: orderID + "@" + s.emailDomain(), Name: "Test " + orderID},
		Currency: "USD",
	}
	if coupon != "" {
		o.CouponCode = s.prefix + coupon
	}
	for i := 0; i+1 < len(items); i += 2 {
		sku, _ := items[i].(string) // a malformed pair makes an item the test then fails on
		qty, _ := items[i+1].(int)
		o.Items = append(o.Items, events.Item{SKU: s.sku(sku), Quantity: qty})
	}
	return events.Event{EventID: events.EventID(uuid.NewString()), EventType: events.OrderPlaced,
		SchemaVersion: events.SchemaVersion, OccurredAt: time.Now().UTC(), Order: o}
}

// cancelled is the order.cancelled event for a placed one.
func cancelled(placed events.Event, reason string) events.Event {
	ev := placed
	ev.EventID = events.EventID(uuid.NewString())
	ev.EventType = events.OrderCancelled
	ev.Reason = reason
	return ev
}

func (s *stack) publish(t *testing.T, evs ...events.Event) {
	t.Helper()
	if n, err := s.pub.Publish(context.Background(), evs); err != nil || n != len(evs) {
		t.Fatalf("published %d of %d: %v", n, len(evs), err)
	}
}

// queryInt runs a query returning one integer.
func (s *stack) queryInt(t *testing.T, q string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := s.env.DB.Pool().QueryRow(context.Background(), q, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

// waitProcessed waits until each handler has processed want events of this
// test's orders and Mailpit holds mails emails for its domain.
func (s *stack) waitProcessed(t *testing.T, want map[string]int64, mails int) {
	t.Helper()
	s.waitProcessedWithin(t, 30*time.Second, want, mails)
}

func (s *stack) waitProcessedWithin(t *testing.T, timeout time.Duration, want map[string]int64, mails int) {
	t.Helper()
	testenv.Eventually(t, timeout, func() error {
		for h, n := range want {
			got := s.queryInt(t, `SELECT count(*) FROM processed_events WHERE handler = $1 AND order_id LIKE $2`, h, s.prefix+"%")
			if got != n {
				return fmt.Errorf("%s processed %d events, want %d", h, got, n)
			}
		}
		got, err := testenv.MailCount(context.Background(), s.emailDomain())
		if err != nil {
			return err
		}
		if got != mails {
			return fmt.Errorf("mailpit holds %d emails for %s, want %d", got, s.emailDomain(), mails)
		}
		return nil
	})
}

// visibility sets every queue's visibility timeout: a killed worker's
// messages come back after it, so tests that kill keep it short.
func visibility(seconds int) func(*topology.Topology) {
	return func(top *topology.Topology) {
		for i := range top.Queues {
			top.Queues[i].VisibilityTimeoutSeconds = seconds
		}
	}
}

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }
