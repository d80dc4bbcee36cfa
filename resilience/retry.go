package resilience

import (
	"context"
	"errors"
	"time"

	"github.com/orderpipe/orderpipe/resilience/retry"
)

// RetryBudget bounds the handlers' in-process retry of a blip. Beyond it,
// the message goes back to its queue with a visibility delay that grows
// with its receive count (worker.RedeliveryPolicy).
type RetryBudget struct {
	// Tries is the most attempts in all. Defaults to 3.
	Tries uint
	// Initial is the first backoff; it grows, with jitter. Defaults to 50ms.
	Initial time.Duration
	// MaxElapsed bounds the whole retry. Defaults to 2s.
	MaxElapsed time.Duration
}

// Retry runs fn until it succeeds, fails permanently, is held, meets an
// open breaker, or the budget is spent; only transient and unavailable
// failures are retried. onRetry (if not nil) hears each retry.
func Retry(ctx context.Context, b RetryBudget, onRetry func(Failure), fn func(context.Context) error) error {
	p := retry.Policy{Tries: b.Tries, Initial: b.Initial, MaxElapsed: b.MaxElapsed}
	if p.Tries == 0 {
		p.Tries = 3
	}
	if p.Initial <= 0 {
		p.Initial = 50 * time.Millisecond
	}
	if p.MaxElapsed <= 0 {
		p.MaxElapsed = 2 * time.Second
	}
	p.MaxInterval = p.MaxElapsed / 2
	var notify func(error)
	if onRetry != nil {
		notify = func(err error) { onRetry(Classify(err)) }
	}
	return retry.Do(ctx, p, notify, func(ctx context.Context) error {
		err := fn(ctx)
		if err == nil {
			return nil
		}
		if c := Classify(err).Class; c == Permanent || c == Wait || errors.Is(err, ErrOpen) || ctx.Err() != nil {
			return retry.Stop(err)
		}
		return err
	})
}
