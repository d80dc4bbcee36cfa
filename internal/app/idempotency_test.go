package app_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/orderpipe/orderpipe/catalog"
	"github.com/orderpipe/orderpipe/events"
	"github.com/orderpipe/orderpipe/internal/app"
	"github.com/orderpipe/orderpipe/internal/testenv"
	"github.com/orderpipe/orderpipe/metrics"
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

// redisOpenFor is the Redis breakers' open period in these runs (shorter
// than production's 5 s, so that the outage run meets Redis again soon).
const redisOpenFor = time.Second

func (m redisMode) String() string {
	return [...]string{"redis up", "redis killed mid-run", "redis down from the start"}[m]
}

// TestExactlyOnceUnderDuplicatesRedeliveryAndRedisOutage publishes each of
// 100 order events five times (three copies at once, two more after the
// first is done) to two workers, and makes every tenth first delivery
// visible again while its handler still runs, as an expiring visibility
// timeout would. With Redis up, with Redis killed in the middle, and with
// Redis down from the start (each on its own stack, in parallel), each run
// ends with exactly 100 invoices, one stock movement per order, one email
// per event and nothing dead-lettered. (What running on the database alone
// costs in throughput is measured by `make bench`, not here.)
func TestExactlyOnceUnderDuplicatesRedeliveryAndRedisOutage(t *testing.T) {
	t.Parallel()
	for _, mode := range []redisMode{redisUp, redisOutage, redisDownAtStart} {
		t.Run(mode.String(), func(t *testing.T) {
			t.Parallel()
			exactlyOnceRun(t, mode, 100)
		})
	}
}

func exactlyOnceRun(t *testing.T, mode redisMode, orders int) {
	t.Helper()
	s := newStack(t)
	skus := []string{"A", "B", "C", "D", "E"}
	const initial = 100000
	for i, sku := range skus {
		s.addProducts(t, catalog.Product{SKU: events.SKU(sku), Name: "Item " + sku, Price: catalog.Cents(100 * (i + 1)), Stock: initial})
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
	sqsc := sqs.NewFromConfig(s.env.AWS)
	var forced, redelivered atomic.Int64
	ms := []*metrics.Metrics{metrics.New(), metrics.New()}
	for _, m := range ms { // two worker tasks on the same queues
		s.startWorker(t, func(c *app.Config) {
			c.Redis = redisstore.Config{URL: redisURL, KeyPrefix: "orderpipe-test:" + s.prefix, BreakerOpenFor: redisOpenFor}
			c.Middleware = forceRedelivery(sqsc, 10, &forced, &redelivered)
			c.Metrics = m
		})
	}
	sum := func(series func(*metrics.Metrics) prometheus.Collector) float64 {
		n := 0.0
		for _, m := range ms {
			n += testutil.ToFloat64(series(m))
		}
		return n
	}

	rng := rand.New(rand.NewPCG(uint64(mode), 1))
	evs := make([]events.Event, orders)
	for i := range evs {
		evs[i] = s.placed(fmt.Sprintf("x%d", i), "", skus[rng.IntN(len(skus))], 1+rng.IntN(3))
	}
	outcome := func(o string) float64 {
		return sum(func(m *metrics.Metrics) prometheus.Collector {
			return m.IdempotencyOutcomes.WithLabelValues("billing", o)
		})
	}
	publishCopies(t, s, evs, 3)
	var back time.Time
	if mode == redisOutage {
		// Killed once a fifth of the orders are billed, back (empty) at
		// three fifths.
		s.waitBilled(t, int64(orders)/5)
		rs.Stop(t)
		t.Logf("redis killed at %d invoices", s.billed(t))
		s.waitBilled(t, int64(orders)*3/5)
		rs.Start(t)
		back = time.Now()
		t.Logf("redis back (empty) at %d invoices", s.billed(t))
	}
	s.waitProcessedWithin(t, time.Minute, all3(int64(orders)), orders)
	// The late duplicates must meet Redis up with the breakers past their
	// open period (the rest of the run can take less than that): the next
	// call after it tries Redis again and closes them.
	time.Sleep(time.Until(back.Add(redisOpenFor)))
	publishCopies(t, s, evs, 2) // late duplicates, after the first copy is done
	waitQueuesEmptyWithin(t, s, time.Minute)

	like := s.prefix + "%"
	checks := []struct {
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
	}
	for _, c := range checks {
		if n := s.queryInt(t, c.query, like); n != c.want {
			t.Errorf("%s = %d, want %d", c.name, n, c.want)
		}
	}
	var want int64
	for _, ev := range evs {
		want += int64(ev.Order.Items[0].Quantity)
	}
	if left := s.queryInt(t, `SELECT sum(stock) FROM products WHERE sku LIKE $1`, like); left != int64(len(skus))*initial-want {
		t.Errorf("stock left %d, want %d", left, int64(len(skus))*initial-want)
	}
	if n, err := testenv.MailCount(context.Background(), s.emailDomain()); err != nil || n != orders {
		t.Errorf("emails in Mailpit = %d (%v), want %d", n, err, orders)
	}
	// The fault injection really happened: copies were received while
	// the first was still running.
	if forced.Load() == 0 || redelivered.Load() == 0 {
		t.Errorf("forced %d redeliveries, saw %d deliveries with a receive count above 1; want both > 0", forced.Load(), redelivered.Load())
	}
	// The metrics say which path decided: Redis acknowledged known
	// duplicates and served products while up; the database alone decided
	// every delivery while Redis was down.
	done, bypass := outcome("done"), outcome("bypass")
	hits := sum(func(m *metrics.Metrics) prometheus.Collector { return m.CacheRequests.WithLabelValues("hit") })
	switch mode {
	case redisUp:
		if done < float64(orders) || hits == 0 {
			t.Errorf("billing acknowledged %.0f duplicates from Redis and the cache had %.0f hits; want >= %d and > 0", done, hits, orders)
		}
	case redisDownAtStart:
		if bypass < 5*float64(orders) {
			t.Errorf("billing bypassed Redis %.0f times, want every delivery (>= %d)", bypass, 5*orders)
		}
	case redisOutage:
		if bypass == 0 || done == 0 {
			t.Errorf("billing bypassed Redis %.0f times and acknowledged %.0f duplicates from it; want both > 0", bypass, done)
		}
	}
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
// holds its handler back a little, so that another consumer receives the
// copy while this one is still running.
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

// TestConflictingPayloadIsDeadLettered sends a second event with a known
// event_id and another payload: every handler dead-letters it with the
// conflict reason and nothing changes, whether Redis (which remembers the
// first payload's fingerprint) or the database ledger (Redis down) catches it.
func TestConflictingPayloadIsDeadLettered(t *testing.T) {
	t.Parallel()
	for _, redisDown := range []bool{false, true} {
		name := "redis up"
		if redisDown {
			name = "redis down"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := newStack(t)
			s.addProducts(t, catalog.Product{SKU: "MUG", Name: "Mug", Price: 1299, Stock: 100})
			s.startWorker(t, func(c *app.Config) {
				if redisDown {
					c.Redis.URL = fmt.Sprintf("redis://127.0.0.1:%d/0", testenv.FreePort(t))
				}
			})
			first := s.placed("c1", "", "MUG", 2)
			s.publish(t, first)
			s.waitProcessed(t, all3(1), 1)

			second := first
			second.Order.Items = []events.Item{{SKU: s.sku("MUG"), Quantity: 7}}
			s.publish(t, second)
			sqsc := sqs.NewFromConfig(s.env.AWS)
			for _, q := range s.ap.Queues {
				got := drainReasons(t, sqsc, q.DLQURL, 1)
				if len(got) != 1 || got[0] != string(events.ReasonConflict) {
					t.Errorf("%s DLQ reasons = %v, want [%s]", q.Handler, got, string(events.ReasonConflict))
				}
			}
			waitQueuesEmpty(t, s)
			if n := s.queryInt(t, `SELECT total_cents FROM invoices WHERE order_id = $1`, first.Order.OrderID); n != 2*1299 {
				t.Errorf("invoice total = %d, want %d (the first payload's)", n, 2*1299)
			}
			if n := s.queryInt(t, `SELECT stock FROM products WHERE sku = $1`, string(s.sku("MUG"))); n != 98 {
				t.Errorf("stock = %d, want 98", n)
			}
			if n, err := testenv.MailCount(context.Background(), s.emailDomain()); err != nil || n != 1 {
				t.Errorf("emails = %d (%v), want 1", n, err)
			}
		})
	}
}
