package lambdaharness_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/orderpipe/orderpipe/catalog"
	"github.com/orderpipe/orderpipe/events"
	"github.com/orderpipe/orderpipe/internal/lambdaharness"
	"github.com/orderpipe/orderpipe/internal/testenv"
	"github.com/orderpipe/orderpipe/store"
	"github.com/orderpipe/orderpipe/topology"
	"github.com/orderpipe/orderpipe/worker"
)

// load publishes orders at about rate a second from a goroutine until stop
// is called, which returns how many it published.
func (s *stack) load(t *testing.T, name string, rate int) (stop func() int) {
	t.Helper()
	done, count := make(chan struct{}), make(chan int, 1)
	go func() {
		n := 0
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		for {
			select {
			case <-done:
				count <- n
				return
			case <-tick.C:
			}
			ev := s.placed(fmt.Sprintf("%s%d", name, n), "MUG", 1)
			if _, err := s.pub.Publish(context.Background(), []events.Event{ev}); err != nil {
				t.Errorf("publish: %v", err)
				count <- n
				return
			}
			n++
		}
	}()
	return func() int { close(done); return <-count }
}

// exactlyOnce checks that each of n orders was processed once by every
// handler and emailed once, and that nothing was dead-lettered.
func (s *stack) exactlyOnce(t *testing.T, db *store.DB, n int) {
	t.Helper()
	s.waitProcessed(t, db, time.Minute, all3(int64(n)), n)
	s.waitQueuesEmpty(t, time.Minute) // the DLQs too: nothing dead-lettered
	like := s.prefix + "%"
	for _, c := range []struct {
		name, query string
	}{
		{"invoices", `SELECT count(*) FROM invoices WHERE order_id LIKE $1`},
		{"stock movements", `SELECT count(*) FROM stock_movements WHERE order_id LIKE $1`},
		{"emails recorded", `SELECT count(*) FROM notifications WHERE order_id LIKE $1 AND status = 'sent'`},
	} {
		if got := queryInt(t, db, c.query, like); got != int64(n) {
			t.Errorf("%s = %d, want %d", c.name, got, n)
		}
	}
}

// TestDatabaseRestartAndOutageThroughTheFunctions runs the functions
// against a PostgreSQL of the test's own under a steady load (20 orders a
// second), restarts it mid-batch, then stops it for 6 s:
//
//   - the restart cuts the invocations in flight (admin_shutdown, refused
//     connections): their records are retried in process or reported
//     failed and come back;
//   - through the outage the database breaker of every environment opens
//     and each invocation fails its batch fast (within the breaker wait,
//     the records delayed by the retry policy) instead of burning
//     receives: no record comes near maxReceiveCount (10).
//
// Every order is processed exactly once and nothing is dead-lettered.
func TestDatabaseRestartAndOutageThroughTheFunctions(t *testing.T) {
	t.Parallel()
	pg := testenv.StartPostgres(t)
	db := pg.Orderpipe(t, "orderpipe")
	s := newStack(t)
	s.addProducts(t, db, catalog.Product{SKU: "MUG", Name: "Mug", Price: 1299, Stock: 100000})
	var receives receiveCounts
	p, logged := s.startFunctions(t, func(c *lambdaharness.PipelineConfig) {
		c.Function.App.Store = store.Config{URL: pg.AdminURL("orderpipe"), Proxy: store.ProxyNone, MaxConns: 2}
		c.Function.App.Middleware = receives.middleware
	})
	start := time.Now()
	stop := s.load(t, "d", 20)
	waitCount(t, db, s, 20)
	pg.Stop(t, "fast")
	pg.Start(t)
	t.Logf("%s: restarted PostgreSQL at %d invoices", time.Since(start).Round(time.Millisecond), countInvoices(t, db, s))
	waitCount(t, db, s, countInvoices(t, db, s)+20)

	before := p.Stats()
	pg.Stop(t, "fast")
	outage := time.Now()
	time.Sleep(6 * time.Second) // the outage's length: the load goes on meanwhile
	during := p.Stats()
	pg.Start(t)
	t.Logf("%s: PostgreSQL down for %s", time.Since(start).Round(time.Millisecond), time.Since(outage).Round(time.Millisecond))
	waitCount(t, db, s, countInvoices(t, db, s)+20)
	n := stop()
	t.Logf("%s: load stopped", time.Since(start).Round(time.Millisecond))
	s.exactlyOnce(t, db, n)

	// Through the outage the invocations failed their batches fast.
	invocations, busy := 0, time.Duration(0)
	for h, st := range during {
		invocations += st.Invocations - before[h].Invocations
		busy += st.Busy - before[h].Busy
	}
	mean := busy / time.Duration(max(invocations, 1))
	if invocations == 0 || mean > 2*time.Second {
		t.Errorf("%d invocations during the outage took %s on average; want them to fail fast (the breaker wait, 500ms)", invocations, mean)
	}
	if len(logged.lines("failing the batch without handling it")) == 0 || len(logged.lines("circuit breaker open: database unavailable")) == 0 {
		t.Error("the log does not say the database breaker opened and batches were failed fast")
	}
	// No invocation ran past its deadline (a timeout fails the whole
	// batch): work that outlives a handler's cut (an email's record
	// retried through the restart) ends within the invocation.
	for h, st := range p.Stats() {
		if st.BatchErrors != 0 {
			t.Errorf("%s: %d invocations failed whole (a timeout?): %+v", h, st.BatchErrors, st)
		}
	}
	if most := receives.max.Load(); most >= 10 {
		t.Errorf("a message was handled on its receive %d: the outage burned receives up to maxReceiveCount", most)
	}
	t.Logf("%d orders; %d invocations during the 6 s outage, %s each on average; the most receives of one message: %d",
		n, invocations, mean, receives.max.Load())
}

// receiveCounts records the highest receive count a message was handled
// with: every receive before it, a batch failed fast included, counts.
type receiveCounts struct{ max atomic.Int64 }

func (r *receiveCounts) middleware(topology.AppliedQueue) worker.Middleware {
	return func(next worker.Handler) worker.Handler {
		return worker.HandlerFunc(func(ctx context.Context, m *worker.Message) error {
			for n := int64(m.ReceiveCount); ; {
				cur := r.max.Load()
				if n <= cur || r.max.CompareAndSwap(cur, n) {
					break
				}
			}
			return next.Handle(ctx, m)
		})
	}
}

// countInvoices counts the test's invoices, asking again (within 30 s)
// while the test's own pool meets the restarted server's cut connections.
func countInvoices(t *testing.T, db *store.DB, s *stack) int64 {
	t.Helper()
	var n int64
	testenv.Eventually(t, 30*time.Second, func() error {
		return db.Pool().QueryRow(context.Background(), `SELECT count(*) FROM invoices WHERE order_id LIKE $1`, s.prefix+"%").Scan(&n)
	})
	return n
}

// waitCount waits until at least n orders are invoiced.
func waitCount(t *testing.T, db *store.DB, s *stack, n int64) {
	t.Helper()
	testenv.Eventually(t, time.Minute, func() error {
		if got := countInvoices(t, db, s); got < n {
			return fmt.Errorf("%d invoiced, waiting for %d", got, n)
		}
		return nil
	})
}
