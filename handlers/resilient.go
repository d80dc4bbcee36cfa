package handlers

import (
	"context"
	"errors"

	"github.com/orderpipe/orderpipe/events"
	"github.com/orderpipe/orderpipe/metrics"
	"github.com/orderpipe/orderpipe/resilience"
	"github.com/orderpipe/orderpipe/worker"
)

// Resilient retries next in process for a blip (a serialization failure, a
// deadlock, a dropped connection), bounded by p, and turns failures that no
// retry can mend (a constraint violation, an SMTP refusal) into permanent
// ones for the DLQ. Everything else goes back to the queue, where the
// runtime delays it by receive count. Decisions already made — dead-letter
// it, come back later, a conflicting payload — pass through untouched.
func Resilient(handler string, p resilience.RetryPolicy, m *metrics.Metrics, next EventFunc) EventFunc {
	m = metrics.Or(m)
	onRetry := func(f resilience.Failure) { m.Retries.WithLabelValues(handler, f.Reason).Inc() }
	return func(ctx context.Context, ev events.Event) error {
		err := resilience.Retry(ctx, p, onRetry, func(ctx context.Context) error {
			err := next(ctx, ev)
			if decided(err) {
				return resilience.Stop(err)
			}
			return err
		})
		if err == nil || decided(err) {
			return err
		}
		if f := resilience.Classify(err); f.Class == resilience.Permanent {
			return worker.Permanent(f.Reason, err)
		}
		return err
	}
}

func decided(err error) bool {
	if err == nil {
		return false
	}
	_, permanent := worker.PermanentReason(err)
	_, later := worker.RetryAfterDelay(err)
	return permanent || later || errors.Is(err, events.ErrConflict)
}
