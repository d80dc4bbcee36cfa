package bench

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/orderpipe/orderpipe/events"
)

// Tracker remembers when each order was published: the database knows when
// its handlers committed, not when it was published.
type Tracker struct {
	mu        sync.Mutex
	published map[string]time.Time
}

// NewTracker returns an empty tracker.
func NewTracker() *Tracker { return &Tracker{published: map[string]time.Time{}} }

// Record is a LoadConfig.OnPublished.
func (t *Tracker) Record(evs []events.Event) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, ev := range evs {
		t.published[ev.Order.OrderID] = ev.OccurredAt
	}
}

// Len is how many orders were recorded.
func (t *Tracker) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.published)
}

// First is the earliest publish time.
func (t *Tracker) First() time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	var first time.Time
	for _, at := range t.published {
		if first.IsZero() || at.Before(first) {
			first = at
		}
	}
	return first
}

// Completions reads, for every tracked order that all three handlers
// committed, the last handler's processed_at: an order is done when its
// invoice, its reservation and its email are all recorded.
//
// processed_at is the database's now() in the handler's transaction, which
// is the time the transaction began: the latency read from it is short of
// the commit by the transaction's own duration (milliseconds).
func (s *Stack) Completions(ctx context.Context, t *Tracker) ([]Completion, error) {
	rows, err := s.Direct.Query(ctx, `
		SELECT order_id, max(processed_at) FROM processed_events
		WHERE event_type = 'order.placed'
		GROUP BY order_id HAVING count(*) = 3`)
	if err != nil {
		return nil, fmt.Errorf("bench: read completions: %w", err)
	}
	defer rows.Close()
	t.mu.Lock()
	defer t.mu.Unlock()
	cs := make([]Completion, 0, len(t.published))
	for rows.Next() {
		var (
			id   string
			done time.Time
		)
		if err := rows.Scan(&id, &done); err != nil {
			return nil, fmt.Errorf("bench: read completions: %w", err)
		}
		if at, ok := t.published[id]; ok {
			cs = append(cs, Completion{Published: at, Done: done})
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("bench: read completions: %w", err)
	}
	return cs, nil
}

// Processed counts the ledger rows: 3 per completed order.
func (s *Stack) Processed(ctx context.Context) (int, error) {
	var n int
	if err := s.Direct.QueryRow(ctx, `SELECT count(*) FROM processed_events`).Scan(&n); err != nil {
		return 0, fmt.Errorf("bench: count processed events: %w", err)
	}
	return n, nil
}

// WaitProcessed waits until n orders went through all three handlers. It
// fails when nothing moved for stall, or when alive (if set) says the
// worker is gone.
func (s *Stack) WaitProcessed(ctx context.Context, n int, stall time.Duration, alive func() bool) error {
	last, lastAt := -1, time.Now()
	for {
		got, err := s.Processed(ctx)
		if err != nil {
			return err
		}
		if got >= 3*n {
			return nil
		}
		if got != last {
			last, lastAt = got, time.Now()
		}
		switch {
		case time.Since(lastAt) > stall:
			return fmt.Errorf("bench: stuck at %d of %d handler commits for %s", got, 3*n, stall)
		case alive != nil && !alive():
			return fmt.Errorf("bench: the worker exited with %d of %d handler commits done", got, 3*n)
		}
		if !sleepCtx(ctx, 250*time.Millisecond) {
			return ctx.Err()
		}
	}
}

// BacklogGate holds the load back while a queue holds limit visible
// messages or more: the pipeline is saturated, with a bounded backlog, so
// its maximum rate is measured without the queue (and the latency) growing
// without end.
type BacklogGate struct {
	limit int64
	depth atomic.Int64
	stop  func()

	mu      sync.Mutex
	sums    map[string]float64 // visible depth summed over the polls, by URL
	samples int
}

// NewBacklogGate polls the visible depth of urls every 100ms.
func NewBacklogGate(ctx context.Context, sqsc *sqs.Client, limit int, urls ...string) *BacklogGate {
	g := &BacklogGate{limit: int64(limit), sums: map[string]float64{}}
	g.stop = every(ctx, 100*time.Millisecond, func(ctx context.Context) {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		var deepest int64
		depths := make([]int64, len(urls))
		for i, u := range urls {
			n, err := visible(ctx, sqsc, u)
			if err != nil {
				return
			}
			deepest, depths[i] = max(deepest, n), n
		}
		g.depth.Store(deepest)
		g.mu.Lock()
		for i, u := range urls {
			g.sums[u] += float64(depths[i])
		}
		g.samples++
		g.mu.Unlock()
	})
	return g
}

// MeanDepths is each queue's mean visible depth over the polls, by URL.
func (g *BacklogGate) MeanDepths() map[string]float64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := map[string]float64{}
	for u, s := range g.sums {
		out[u] = s / float64(max(g.samples, 1))
	}
	return out
}

// Wait returns once the deepest queue is below the limit.
func (g *BacklogGate) Wait(ctx context.Context) error {
	for g.depth.Load() >= g.limit {
		if !sleepCtx(ctx, 10*time.Millisecond) {
			return ctx.Err()
		}
	}
	return nil
}

// Stop stops polling.
func (g *BacklogGate) Stop() { g.stop() }

func visible(ctx context.Context, sqsc *sqs.Client, url string) (int64, error) {
	out, err := sqsc.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl:       aws.String(url),
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameApproximateNumberOfMessages},
	})
	if err != nil {
		return 0, fmt.Errorf("bench: depth of %s: %w", url, err)
	}
	var n int64
	if _, err := fmt.Sscan(out.Attributes[string(sqstypes.QueueAttributeNameApproximateNumberOfMessages)], &n); err != nil {
		return 0, fmt.Errorf("bench: depth of %s: %w", url, err)
	}
	return n, nil
}
