package lambdaharness_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/orderpipe/orderpipe/catalog"
	"github.com/orderpipe/orderpipe/events"
	"github.com/orderpipe/orderpipe/internal/lambdaharness"
	"github.com/orderpipe/orderpipe/internal/testenv"
	"github.com/orderpipe/orderpipe/store/redisstore"
	"github.com/orderpipe/orderpipe/topology"
	"github.com/orderpipe/orderpipe/worker"
)

// redisMode is how Redis behaves during one exactly-once run.
type redisMode int

const (
	redisUp          redisMode = iota // up all along
	redisOutage                       // killed mid-run, back (empty) later
	redisDownAtStart                  // never reachable
)

func (m redisMode) String() string {
	return [...]string{"redis up", "redis killed mid-run", "redis down from the start"}[m]
}

// redisOpenFor is the Redis breakers' open period in these runs.
const redisOpenFor = time.Second

// TestExactlyOnceThroughTheFunctions is internal/app's
// TestExactlyOnceUnderDuplicatesRedeliveryAndRedisOutage through the
// Lambda functions: each of 60 order events published five times (three
// copies at once, two more after the first is done) to the three
// functions, two environments each behind their event source mappings,
// every tenth first delivery made visible again while its handler runs (a
// second environment receives the copy). With Redis up, killed mid-run,
// and down from the start: exactly one invoice, one stock movement and one
// email per order, nothing dead-lettered, the queues empty.
func TestExactlyOnceThroughTheFunctions(t *testing.T) {
	t.Parallel()
	for _, mode := range []redisMode{redisUp, redisOutage, redisDownAtStart} {
		t.Run(mode.String(), func(t *testing.T) {
			t.Parallel()
			exactlyOnceRun(t, mode, 60)
		})
	}
}

func exactlyOnceRun(t *testing.T, mode redisMode, orders int) {
	t.Helper()
	s := newStack(t)
	db := s.env.DB
	skus := []string{"A", "B", "C", "D", "E"}
	const initial = 100000
	for i, sku := range skus {
		s.addProducts(t, db, catalog.Product{SKU: events.SKU(sku), Name: "Item " + sku, Price: catalog.Cents(100 * (i + 1)), Stock: initial})
	}
	var redisURL string
	var rs *testenv.RedisServer
	switch mode {
	case redisDownAtStart:
		redisURL = fmt.Sprintf("redis://127.0.0.1:%d/0", testenv.FreePort(t))
	default:
		rs = testenv.StartRedis(t)
		redisURL = rs.URL
	}
	var forced, redelivered atomic.Int64
	p, _ := s.startFunctions(t, func(c *lambdaharness.PipelineConfig) {
		c.Function.App.Redis = redisstore.Config{URL: redisURL, KeyPrefix: "orderpipe-test:" + s.prefix, BreakerOpenFor: redisOpenFor}
		c.Function.App.Middleware = forceRedelivery(s.sqs, 10, &forced, &redelivered)
	})

	rng := rand.New(rand.NewPCG(uint64(mode), 19))
	evs := make([]events.Event, orders)
	for i := range evs {
		evs[i] = s.placed(fmt.Sprintf("x%d", i), skus[rng.IntN(len(skus))], 1+rng.IntN(3))
	}
	start := time.Now()
	publishCopies(t, s, evs, 3)
	var back time.Time
	if mode == redisOutage {
		waitBilled(t, s, int64(orders)/5)
		rs.Stop(t)
		t.Logf("redis killed at %d invoices", billed(t, s))
		waitBilled(t, s, int64(orders)*3/5)
		rs.Start(t)
		back = time.Now()
		t.Logf("redis back (empty) at %d invoices", billed(t, s))
	}
	s.waitProcessed(t, db, time.Minute, all3(int64(orders)), orders)
	t.Logf("%s: every order processed", time.Since(start).Round(time.Millisecond))
	// The late duplicates meet Redis with the breakers past their open
	// period (bounded: redisOpenFor).
	time.Sleep(time.Until(back.Add(redisOpenFor)))
	publishCopies(t, s, evs, 2)
	s.waitQueuesEmpty(t, time.Minute)
	t.Logf("%s: the late duplicates acknowledged", time.Since(start).Round(time.Millisecond))

	like := s.prefix + "%"
	for _, c := range []struct {
		name  string
		query string
		want  int64
	}{
		{"invoices", `SELECT count(*) FROM invoices WHERE order_id LIKE $1`, int64(orders)},
		{"orders without exactly one stock movement", `SELECT count(*) FROM reservations r WHERE order_id LIKE $1 AND
			(SELECT count(*) FROM stock_movements m WHERE m.order_id = r.order_id) <> 1`, 0},
		{"reservations", `SELECT count(*) FROM reservations WHERE order_id LIKE $1 AND status = 'reserved'`, int64(orders)},
		{"stock movements", `SELECT count(*) FROM stock_movements WHERE order_id LIKE $1`, int64(orders)},
		{"emails recorded", `SELECT count(*) FROM notifications WHERE order_id LIKE $1 AND status = 'sent'`, int64(orders)},
		{"ledger markers", `SELECT count(*) FROM processed_events WHERE order_id LIKE $1`, 3 * int64(orders)},
	} {
		if n := queryInt(t, db, c.query, like); n != c.want {
			t.Errorf("%s = %d, want %d", c.name, n, c.want)
		}
	}
	var want int64
	for _, ev := range evs {
		want += int64(ev.Order.Items[0].Quantity)
	}
	if left := queryInt(t, db, `SELECT sum(stock) FROM products WHERE sku LIKE $1`, like); left != int64(len(skus))*initial-want {
		t.Errorf("stock left %d, want %d", left, int64(len(skus))*initial-want)
	}
	if n, err := testenv.MailCount(context.Background(), s.emailDomain()); err != nil || n != orders {
		t.Errorf("emails in Mailpit = %d (%v), want %d", n, err, orders)
	}
	if forced.Load() == 0 || redelivered.Load() == 0 {
		t.Errorf("forced %d redeliveries, saw %d deliveries with a receive count above 1; want both > 0", forced.Load(), redelivered.Load())
	}
	for h, st := range p.Stats() {
		if st.Environments < 1 || st.Environments > 2 || st.BatchErrors != 0 || st.Records < 5*orders {
			t.Errorf("%s: %+v; want 1 or 2 environments, no failed batch, at least %d records", h, st, 5*orders)
		}
	}
}

func billed(t *testing.T, s *stack) int64 {
	t.Helper()
	return queryInt(t, s.env.DB, `SELECT count(*) FROM invoices WHERE order_id LIKE $1`, s.prefix+"%")
}

func waitBilled(t *testing.T, s *stack, n int64) {
	t.Helper()
	testenv.Eventually(t, time.Minute, func() error {
		if got := billed(t, s); got < n {
			return fmt.Errorf("%d billed, waiting for %d", got, n)
		}
		return nil
	})
}

// publishCopies publishes copies of every event, the copies of one event
// from different goroutines, so that they arrive together.
func publishCopies(t *testing.T, s *stack, evs []events.Event, copies int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, copies)
	for range copies {
		shuffled := append([]events.Event(nil), evs...)
		rand.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		wg.Go(func() {
			if n, err := s.pub.Publish(context.Background(), shuffled); err != nil || n != len(shuffled) {
				errs <- fmt.Errorf("published %d of %d: %w", n, len(shuffled), err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// forceRedelivery makes every nth first delivery visible again at once and
// holds its handler back a little, so that another environment receives
// the copy while this one is still running.
func forceRedelivery(sqsc *sqs.Client, nth int64, forced, redelivered *atomic.Int64) func(topology.AppliedQueue) worker.Middleware {
	var n atomic.Int64
	return func(q topology.AppliedQueue) worker.Middleware {
		return func(next worker.Handler) worker.Handler {
			return worker.HandlerFunc(func(ctx context.Context, m *worker.Message) error {
				if m.ReceiveCount > 1 {
					redelivered.Add(1)
				}
				if m.ReceiveCount == 1 && n.Add(1)%nth == 0 {
					_, err := sqsc.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{
						QueueUrl: aws.String(q.URL), ReceiptHandle: aws.String(m.ReceiptHandle()), VisibilityTimeout: 0,
					})
					if err == nil {
						forced.Add(1)
						time.Sleep(300 * time.Millisecond)
					}
				}
				return next.Handle(ctx, m)
			})
		}
	}
}

// TestConflictingPayloadThroughTheFunctions: a second event with a known
// event_id and another payload is dead-lettered by every function with the
// conflict reason and the runtime's attributes, reported done (so the
// event source deletes it), and changes nothing.
func TestConflictingPayloadThroughTheFunctions(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	db := s.env.DB
	s.addProducts(t, db, catalog.Product{SKU: "MUG", Name: "Mug", Price: 1299, Stock: 100})
	s.startFunctions(t)
	first := s.placed("c1", "MUG", 2)
	s.publish(t, first)
	s.waitProcessed(t, db, 30*time.Second, all3(1), 1)

	second := first
	second.Order.Items = []events.Item{{SKU: s.sku("MUG"), Quantity: 7}}
	s.publish(t, second)
	for _, q := range s.ap.Queues {
		got := s.drainLetters(t, q.DLQURL, 1)
		if len(got) != 1 || got[0].attrs[worker.AttrDLQReason] != string(events.ReasonConflict) ||
			got[0].attrs[worker.AttrDLQSourceQueue] != q.URL || got[0].attrs[worker.AttrDLQReceiveCount] != "1" {
			t.Errorf("%s DLQ = %+v, want one %s dead letter from %s on its first receive", q.Handler, got, events.ReasonConflict, q.URL)
		}
	}
	s.waitQueuesEmpty(t, 30*time.Second)
	if n := queryInt(t, db, `SELECT total_cents FROM invoices WHERE order_id = $1`, first.Order.OrderID); n != 2*1299 {
		t.Errorf("invoice total = %d, want %d (the first payload's)", n, 2*1299)
	}
	if n := queryInt(t, db, `SELECT stock FROM products WHERE sku = $1`, string(s.sku("MUG"))); n != 98 {
		t.Errorf("stock = %d, want 98", n)
	}
}

// TestPoisonMessagesThroughTheFunctions: messages that can never succeed
// land in every subscribed queue's DLQ on their first receive, with their
// reason, within the same batches as a good order, which is processed.
func TestPoisonMessagesThroughTheFunctions(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	db := s.env.DB
	s.addProducts(t, db, catalog.Product{SKU: "MUG", Name: "Mug", Price: 1299, Stock: 10})
	s.startFunctions(t)
	bad := []struct {
		body   string
		reason events.Reason
	}{
		{`not json at all`, events.ReasonMalformedJSON},
		{`{"event_id": "6f1c2b1e-4a8e-4a47-9a55-0d0b8f1f2a10", "schema_version": 2}`, events.ReasonUnsupportedVersion},
		{strings.Replace(mustJSON(t, s.placed("q1", "MUG", 1)), `"order.placed"`, `"order.refunded"`, 1), events.ReasonUnknownType},
		{mustJSON(t, s.placed("q2", "NOPE", 1)), events.ReasonUnknownSKU},
	}
	var raw []events.RawMessage
	for _, b := range bad {
		raw = append(raw, events.RawMessage{Body: b.body, EventType: string(events.OrderPlaced), SchemaVersion: 1})
	}
	good := s.placed("good", "MUG", 1)
	goodBody := mustJSON(t, good)
	raw = append(raw, events.RawMessage{Body: goodBody, EventType: string(events.OrderPlaced), SchemaVersion: 1})
	if _, err := s.pub.PublishRaw(context.Background(), raw); err != nil {
		t.Fatal(err)
	}
	s.waitProcessed(t, db, 30*time.Second, all3(1), 1)
	for _, q := range s.ap.Queues {
		byBody := map[string]deadLetter{}
		for _, l := range s.drainLetters(t, q.DLQURL, len(bad)) {
			byBody[l.body] = l
		}
		for _, b := range bad {
			l, ok := byBody[b.body]
			switch {
			case !ok:
				t.Errorf("%s: %.40q is not in the DLQ", q.Handler, b.body)
			case l.attrs[worker.AttrDLQReason] != string(b.reason) || l.attrs[worker.AttrDLQReceiveCount] != "1" || l.attrs[worker.AttrDLQSourceQueue] != q.URL:
				t.Errorf("%s: %.40q dead-lettered with %v, want reason %s on the first receive from %s", q.Handler, b.body, l.attrs, b.reason, q.URL)
			}
		}
	}
	s.waitQueuesEmpty(t, 30*time.Second)
}

func mustJSON(t *testing.T, ev events.Event) string {
	t.Helper()
	b, err := events.Encode(ev)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
