package app_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/orderpipe/orderpipe/catalog"
	"github.com/orderpipe/orderpipe/events"
	"github.com/orderpipe/orderpipe/internal/app"
	"github.com/orderpipe/orderpipe/internal/testenv"
	"github.com/orderpipe/orderpipe/metrics"
	"github.com/orderpipe/orderpipe/store"
	"github.com/orderpipe/orderpipe/store/redisstore"
	"github.com/orderpipe/orderpipe/topology"
	"github.com/orderpipe/orderpipe/worker"
)

// squeezedRetention is the retention of TestExactlyOnceWhileRetentionRuns,
// its topology's rule in small: longer than any copy of an event can
// follow its first (in this run, a late copy is published once its wave is
// billed; a copy that met another's email claim comes back after 5 s; one
// whose retry could not be scheduled after the 5 s visibility timeout; a
// retry after at most 2 s), and shorter than the run, so that the rows of
// the first waves go while the last ones flow. The worker's configuration
// refuses anything under 15 days; app.Config takes what a test gives it.
const squeezedRetention = 15 * time.Second

// batchSpan is one retention batch, as a worker's BatchFunc saw it.
type batchSpan struct {
	worker     int
	table      string
	rows       int
	start, end time.Time
}

// TestExactlyOnceWhileRetentionRuns runs the exactly-once flow with the
// ledger alone deciding (Redis down from the start) while the retention,
// squeezed to seconds, removes ledger rows and email claims under load:
// 200 orders in 25 waves a second apart, each published three times at once and twice
// more once billed, every tenth first delivery made visible again while
// its handler runs, to two workers whose maintenance checks four times a
// second. Each order ends billed once, with one stock movement and one
// email; nothing is dead-lettered; rows were removed while orders flowed;
// no two batches ran at once (one lease holder at a time). What a handler
// waited for the removal is measured and logged (handler latency before
// and during removal, the longest lock wait a removal caused), not
// asserted: timings on a shared test machine are not a verdict.
func TestExactlyOnceWhileRetentionRuns(t *testing.T) {
	t.Parallel()
	s := newStack(t, visibility(5))
	s.env = s.env.Isolated(t, "retention_load", 4) // the squeezed retention reaches every row of the database
	skus := []string{"A", "B", "C"}
	const initial = 100000
	for i, sku := range skus {
		s.addProducts(t, catalog.Product{SKU: events.SKU(sku), Name: "Item " + sku, Price: catalog.Cents(100 * (i + 1)), Stock: initial})
	}

	var (
		mu       sync.Mutex
		batches  []batchSpan
		handled  []handlerSpan
		removing atomic.Int64 // ledger rows removed so far
	)
	sqsc := sqs.NewFromConfig(s.env.AWS)
	var forced, redelivered atomic.Int64
	redisDown := fmt.Sprintf("redis://127.0.0.1:%d/0", testenv.FreePort(t))
	for i := range 2 {
		redirect := forceRedelivery(sqsc, 10, &forced, &redelivered)
		s.startWorker(t, func(c *app.Config) {
			c.Store.MaxConns = 4
			c.Redis = redisstore.Config{URL: redisDown, KeyPrefix: "orderpipe-test:" + s.prefix, BreakerOpenFor: redisOpenFor}
			c.Metrics = metrics.New()
			c.Middleware = func(q topology.AppliedQueue) worker.Middleware {
				return func(next worker.Handler) worker.Handler {
					return redirect(q)(timeHandler(q.Handler, next, &mu, &handled))
				}
			}
			c.Maintenance = app.MaintenanceConfig{Retention: squeezedRetention, Interval: 250 * time.Millisecond,
				Removal: store.RetentionConfig{BatchFunc: func(table string, rows int, took time.Duration) {
					end := time.Now()
					if table == store.TableLedger {
						removing.Add(int64(rows))
					}
					mu.Lock()
					defer mu.Unlock()
					batches = append(batches, batchSpan{worker: i, table: table, rows: rows, start: end.Add(-took), end: end})
				}}}
		})
	}
	stopSampling, lockWaits := sampleLockWaits(t, s.env)

	const waves, perWave = 25, 8
	orders := waves * perWave
	rng := rand.New(rand.NewPCG(7, 20))
	var all []events.Event
	pace := time.NewTicker(time.Second) // load shaping: the run outlasts the retention
	defer pace.Stop()
	for w := range waves {
		evs := make([]events.Event, perWave)
		for i := range evs {
			evs[i] = s.placed(fmt.Sprintf("r%d-%d", w, i), "", skus[rng.IntN(len(skus))], 1+rng.IntN(3))
		}
		all = append(all, evs...)
		publishCopies(t, s, evs, 3)
		s.waitBilled(t, int64(len(all))) // within a minute
		publishCopies(t, s, evs, 2)      // late copies: after the first, within the retention
		<-pace.C
	}
	removedWhileFlowing := removing.Load()
	waitQueuesEmptyWithin(t, s, time.Minute)
	testenv.Eventually(t, 30*time.Second, func() error {
		if n, err := testenv.MailCount(context.Background(), s.emailDomain()); err != nil || n != orders {
			return fmt.Errorf("mailpit holds %d emails, want %d (%w)", n, orders, err)
		}
		return nil
	})
	stopSampling()

	like := s.prefix + "%"
	for _, c := range []struct {
		name, query string
		want        int64
	}{
		{"invoices", `SELECT count(*) FROM invoices WHERE order_id LIKE $1`, int64(orders)},
		{"orders without exactly one stock movement", `SELECT count(*) FROM reservations r WHERE order_id LIKE $1 AND
			(SELECT count(*) FROM stock_movements m WHERE m.order_id = r.order_id) <> 1`, 0},
		{"reservations", `SELECT count(*) FROM reservations WHERE order_id LIKE $1 AND status = 'reserved'`, int64(orders)},
		{"stock movements", `SELECT count(*) FROM stock_movements WHERE order_id LIKE $1`, int64(orders)},
	} {
		if n := s.queryInt(t, c.query, like); n != c.want {
			t.Errorf("%s = %d, want %d", c.name, n, c.want)
		}
	}
	var want int64
	for _, ev := range all {
		want += int64(ev.Order.Items[0].Quantity)
	}
	if left := s.queryInt(t, `SELECT sum(stock) FROM products WHERE sku LIKE $1`, like); left != int64(len(skus))*initial-want {
		t.Errorf("stock left %d, want %d", left, int64(len(skus))*initial-want)
	}
	if n, err := testenv.MailCount(context.Background(), s.emailDomain()); err != nil || n != orders {
		t.Errorf("emails in Mailpit = %d (%v), want %d", n, err, orders)
	}
	if forced.Load() == 0 || redelivered.Load() == 0 {
		t.Errorf("forced %d redeliveries, saw %d; want both > 0", forced.Load(), redelivered.Load())
	}
	if removedWhileFlowing == 0 {
		t.Errorf("no ledger row was removed while orders flowed (%d by the end)", removing.Load())
	}

	mu.Lock()
	defer mu.Unlock()
	if err := overlapping(batches); err != nil {
		t.Error(err)
	}
	logStalls(t, batches, handled, lockWaits())
}

// handlerSpan is one handler call, as the timing middleware saw it.
type handlerSpan struct {
	handler    string
	start, end time.Time
}

// timeHandler records each call of next.
func timeHandler(name string, next worker.Handler, mu *sync.Mutex, into *[]handlerSpan) worker.Handler {
	return worker.HandlerFunc(func(ctx context.Context, m *worker.Message) error {
		start := time.Now()
		err := next.Handle(ctx, m)
		end := time.Now()
		mu.Lock()
		*into = append(*into, handlerSpan{handler: name, start: start, end: end})
		mu.Unlock()
		return err
	})
}

// overlapping reports two batches of different workers that ran at once.
func overlapping(bs []batchSpan) error {
	for i, a := range bs {
		for _, b := range bs[i+1:] {
			if a.worker != b.worker && a.start.Before(b.end) && b.start.Before(a.end) {
				return fmt.Errorf("batches of workers %d and %d ran at once (%s to %s, %s to %s): the lease let two runners in",
					a.worker, b.worker, a.start.Format(time.StampMicro), a.end.Format(time.StampMicro), b.start.Format(time.StampMicro), b.end.Format(time.StampMicro))
			}
		}
	}
	return nil
}

// lockWaitFigures is what sampleLockWaits saw: the longest a handler's
// statement was seen waiting for a lock, and the longest when a retention
// batch was what it waited for.
type lockWaitFigures struct {
	samples           int
	any, byRetention  time.Duration
	byRetentionCounts int
}

// sampleLockWaits polls pg_stat_activity every 20 ms until stop is
// called, for the statements (other than the retention's) waiting for a
// lock in the test's database.
func sampleLockWaits(t *testing.T, env *testenv.Env) (stop func(), figures func() lockWaitFigures) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var (
		mu  sync.Mutex
		got lockWaitFigures
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			var anyWait, byRetention float64
			var n int
			err := env.DB.Pool().QueryRow(ctx, `
				SELECT coalesce(max(extract(epoch FROM clock_timestamp() - a.query_start)), 0),
				       coalesce(max(extract(epoch FROM clock_timestamp() - a.query_start)) FILTER (WHERE r.blocked), 0),
				       count(*) FILTER (WHERE r.blocked)
				FROM pg_stat_activity a
				CROSS JOIN LATERAL (SELECT EXISTS (SELECT 1 FROM pg_stat_activity b
				        WHERE b.pid = ANY (pg_blocking_pids(a.pid)) AND b.query LIKE $1) AS blocked) r
				WHERE a.datname = current_database() AND a.wait_event_type = 'Lock' AND a.query NOT LIKE $1`,
				store.RetentionMarker+"%").Scan(&anyWait, &byRetention, &n)
			if err == nil {
				mu.Lock()
				got.samples++
				got.any = max(got.any, time.Duration(anyWait*float64(time.Second)))
				got.byRetention = max(got.byRetention, time.Duration(byRetention*float64(time.Second)))
				got.byRetentionCounts += n
				mu.Unlock()
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	stop = func() { cancel(); <-done }
	t.Cleanup(stop)
	return sync.OnceFunc(stop), func() lockWaitFigures { mu.Lock(); defer mu.Unlock(); return got }
}

// logStalls logs the removal's figures and what the handlers saw before
// the first removal and while removals ran.
func logStalls(t *testing.T, bs []batchSpan, hs []handlerSpan, lw lockWaitFigures) {
	t.Helper()
	var first time.Time
	var longest time.Duration
	removed := map[string]int{}
	for _, b := range bs {
		if b.rows > 0 && (first.IsZero() || b.start.Before(first)) {
			first = b.start
		}
		longest = max(longest, b.end.Sub(b.start))
		removed[b.table] += b.rows
	}
	var before, during []time.Duration
	for _, h := range hs {
		if !first.IsZero() && h.end.After(first) {
			during = append(during, h.end.Sub(h.start))
		} else {
			before = append(before, h.end.Sub(h.start))
		}
	}
	t.Logf("retention: %d batches removed %v, the longest %s", len(bs), removed, longest.Round(time.Microsecond))
	t.Logf("handler calls before the first removal: %s; while removals ran: %s", latencies(before), latencies(during))
	t.Logf("lock waits (pg_stat_activity every 20ms, %d samples): longest seen %s; caused by a retention batch: %d seen, the longest %s",
		lw.samples, lw.any.Round(time.Microsecond), lw.byRetentionCounts, lw.byRetention.Round(time.Microsecond))
}

// latencies writes n, p50, p99 and max of ds.
func latencies(ds []time.Duration) string {
	if len(ds) == 0 {
		return "none"
	}
	slices.Sort(ds)
	q := func(p float64) time.Duration {
		return ds[min(int(p*float64(len(ds))), len(ds)-1)].Round(time.Microsecond)
	}
	return fmt.Sprintf("%d calls, p50 %s, p99 %s, max %s", len(ds), q(0.5), q(0.99), ds[len(ds)-1].Round(time.Microsecond))
}
