package handlers

import (
	"context"

	"github.com/orderpipe/orderpipe/events"
	"github.com/orderpipe/orderpipe/metrics"
	"github.com/orderpipe/orderpipe/resilience"
)

// Resilient retries next in process for a blip (a serialization failure, a
// deadlock, a dropped connection), within budget: resilience.Retry retries
// only what Classify calls transient or unavailable. What is left goes back
// through Adapt to the runtime, which redelivers it later.
func Resilient(handler string, budget resilience.RetryBudget, m *metrics.Metrics, next EventFunc) EventFunc {
	m = metrics.Or(m)
	onRetry := func(f resilience.Failure) { m.Retries.WithLabelValues(handler, f.Reason).Inc() }
	return func(ctx context.Context, ev events.Event) error {
		return resilience.Retry(ctx, budget, onRetry, func(ctx context.Context) error { return next(ctx, ev) })
	}
}
