package app_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/orderpipe/orderpipe/catalog"
	"github.com/orderpipe/orderpipe/events"
	"github.com/orderpipe/orderpipe/internal/testenv"
)

// TestOutboxRelayFailuresLeaveTheDatabaseAlone: SNS resets every publish
// while inventory keeps writing out-of-stock cancellations to the outbox.
// The relay's failures are SNS's: they open the relay's own breaker, never
// the database's (which would stop every consumer and make the worker
// unready while PostgreSQL is healthy), and never reset the database pool.
// Once SNS answers again, the outbox drains.
func TestOutboxRelayFailuresLeaveTheDatabaseAlone(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.addProducts(t, catalog.Product{SKU: "GONE", Name: "Sold out", Price: 900, Stock: 0})
	proxy := testenv.StartAWSProxy(t, testenv.Endpoint)
	proxy.Fail("PublishBatch", testenv.AWSReset)
	_, addr := s.startWithMetrics(t, "worker", "AWS_ENDPOINT_URL="+proxy.URL, "AWS_MAX_ATTEMPTS=1", "WORKER_HANDLERS=inventory")
	evs := s.publishOrderFor(t, 20, "gone", "GONE")

	testenv.Eventually(t, 60*time.Second, func() error {
		if n := proxy.Faulted("PublishBatch"); n < 25 {
			return fmt.Errorf("%d publishes reset; waiting for 25", n)
		}
		return nil
	})
	m := metricsNow(t, addr)
	expectMetric(t, m, `orderpipe_breaker_transitions_total{breaker="database",to="open"}`, 0)
	expectMetric(t, m, `orderpipe_breaker_state{breaker="database"}`, 0)
	for series, v := range m {
		if v > 0 && strings.HasPrefix(series, "orderpipe_db_pool_resets_total") {
			t.Errorf("%s = %v: an SNS failure reset the database pool", series, v)
		}
	}
	if status, body := get(t, "http://"+addr+"/readyz"); status != http.StatusOK {
		t.Errorf("/readyz = %d while only SNS fails: %s", status, body)
	}
	testenv.Eventually(t, 30*time.Second, func() error {
		if m := metricsNow(t, addr); m[`orderpipe_breaker_state{breaker="sns"}`] != 2 {
			return errors.New("the relay's SNS breaker did not open")
		}
		return nil
	})

	proxy.Clear()
	testenv.Eventually(t, 30*time.Second, func() error {
		if n := s.queryInt(t, `SELECT count(*) FROM outbox WHERE order_id LIKE $1 AND sent_at IS NULL`, s.prefix+"%"); n != 0 {
			return fmt.Errorf("%d outbox events unsent after SNS came back", n)
		}
		if n := s.queryInt(t, `SELECT count(*) FROM outbox WHERE order_id LIKE $1`, s.prefix+"%"); n != int64(len(evs)) {
			return fmt.Errorf("%d outbox events, want %d", n, len(evs))
		}
		return nil
	})
}

// publishOrderFor publishes n orders of one unit of sku.
func (s *stack) publishOrderFor(t *testing.T, n int, tag, sku string) []string {
	t.Helper()
	evs := make([]events.Event, n)
	ids := make([]string, n)
	for i := range evs {
		evs[i] = s.placed(fmt.Sprintf("%s%d", tag, i), "", sku, 1)
		ids[i] = evs[i].Order.OrderID
	}
	s.publish(t, evs...)
	return ids
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, errors.Unwrap(err))
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
